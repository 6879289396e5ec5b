"""The outbox keeps only pending and quarantined rows (schema public): sent rows and ix_outbox_sent_at go.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from saas.common.events.tables import downgrade_outbox_v3, upgrade_outbox_v3

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "public"


def upgrade() -> None:
    upgrade_outbox_v3(op, SCHEMA)


def downgrade() -> None:
    downgrade_outbox_v3(op, SCHEMA)
