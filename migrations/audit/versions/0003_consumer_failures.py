"""Per-event handler failure counts for the audit consumer, which runs as `audit_writer`.

The consumer adds, updates and removes its own rows here (unlike audit.events, which it may only
append to).

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

SCHEMA = "audit"
WRITER_ROLE = "audit_writer"


def upgrade() -> None:
    create_consumer_failures_v1(op, SCHEMA)
    op.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.consumer_failures TO {WRITER_ROLE}"
    )


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON {SCHEMA}.consumer_failures FROM {WRITER_ROLE}")
    op.drop_table("consumer_failures", schema=SCHEMA)
