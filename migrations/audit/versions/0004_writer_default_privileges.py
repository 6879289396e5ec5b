"""Tables later audit migrations add are readable and appendable by `audit_writer`, no more.

0002 granted `audit_writer` what it needs on today's tables; default privileges cover the
migration login's later tables the same way (SELECT and INSERT only: whatever the audit schema
gains stays append-only unless its migration says otherwise). The version table stays out of reach.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from saas.common.db_roles import grant_schema_access_v1

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER_ROLE = "audit_writer"


def upgrade() -> None:
    grant_schema_access_v1(op, "audit", WRITER_ROLE, "SELECT, INSERT")


def downgrade() -> None:
    op.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA audit REVOKE ALL ON SEQUENCES FROM {WRITER_ROLE}"
    )
    op.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA audit REVOKE ALL ON TABLES FROM {WRITER_ROLE}")
