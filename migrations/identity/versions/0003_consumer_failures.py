"""Per-event handler failure counts for identity's consumers (schema identity).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from saas.common.events.tables import create_consumer_failures_v1

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"


def upgrade() -> None:
    create_consumer_failures_v1(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("consumer_failures", schema=SCHEMA)
