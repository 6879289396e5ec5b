"""Outbox quarantine for tenancy (schema public): attempts, last error, quarantined rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from saas.common.events.tables import downgrade_outbox_v2, upgrade_outbox_v2

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "public"


def upgrade() -> None:
    upgrade_outbox_v2(op, SCHEMA)


def downgrade() -> None:
    downgrade_outbox_v2(op, SCHEMA)
