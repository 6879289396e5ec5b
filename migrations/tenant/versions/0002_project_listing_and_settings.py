"""Projects: newest-first pages by (created_at, id), names never blank. Settings: per-tenant
defaults, seeded when a tenant is provisioned.

Runs with search_path set to the tenant's schema, so tables are created unqualified.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_projects_created_at_id", "projects", ["created_at", "id"])
    op.create_check_constraint("ck_projects_name_not_blank", "projects", "btrim(name) <> ''")
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", postgresql.JSONB, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_constraint("ck_projects_name_not_blank", "projects")
    op.drop_index("ix_projects_created_at_id", "projects")
