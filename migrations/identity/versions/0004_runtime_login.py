"""The identity service's own login may use the rows of schema identity, and nothing more.

The migration login owns the schema and its tables; `saas_identity` (created by `saas db
bootstrap-roles`) gets row access and sequences, also on tables later migrations add, but never
the version table and never the right to alter or drop anything.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

from saas.common.db_roles import grant_schema_access_v1, revoke_schema_access_v1

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "identity"
LOGIN = "saas_identity"


def upgrade() -> None:
    grant_schema_access_v1(op, SCHEMA, LOGIN)


def downgrade() -> None:
    revoke_schema_access_v1(op, SCHEMA, LOGIN)
