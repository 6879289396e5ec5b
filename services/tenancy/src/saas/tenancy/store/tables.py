"""Tenancy's tables as runtime code sees them (the migrations create them).

`public`'s tables are qualified; the tenant tables are not, so they resolve to whichever tenant
schema the session's `SET LOCAL search_path` names (`Database.get_tenant_session`), and nothing
else.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

SCHEMA = "public"  # alembic.ini's [tenancy] section names it for migrations
metadata = sa.MetaData(schema=SCHEMA)
tenant_metadata = sa.MetaData()  # no schema: the tenant session's search path decides
NOW = sa.func.now()


def _timestamp(name: str, **kwargs) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


# -- public ----------------------------------------------------------------------------------
tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("slug", sa.String(40), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_by", sa.Uuid),
    sa.Column("failure_reason", sa.Text),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("updated_at", nullable=False, server_default=NOW),
    _timestamp("status_changed_at", nullable=False, server_default=NOW),
    _timestamp("deleted_at"),
)

workflow_executions = sa.Table(
    "workflow_executions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    sa.Column("workflow_type", sa.String(100), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(100)),
    sa.Column("status", sa.String(20), nullable=False),  # running, completed, failed
    sa.Column("step", sa.String(50)),
    sa.Column("error_message", sa.Text),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("updated_at", nullable=False, server_default=NOW),
    _timestamp("finished_at"),
)

idempotency_keys = sa.Table(
    "tenant_idempotency_keys",
    metadata,
    sa.Column("user_id", sa.Uuid, primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.LargeBinary, nullable=False),
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    _timestamp("created_at", nullable=False, server_default=NOW),
)

backups = sa.Table(
    "tenant_backups",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("schema_version", sa.String(32)),
    sa.Column("reason", sa.String(20), nullable=False),  # deletion, operator
    _timestamp("taken_at", nullable=False, server_default=NOW),
)

# -- a tenant's schema -------------------------------------------------------------------------
projects = sa.Table(
    "projects",
    tenant_metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", sa.Uuid, nullable=False),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("updated_at", nullable=False, server_default=NOW),
)

settings = sa.Table(
    "settings",
    tenant_metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", postgresql.JSONB, nullable=False),
    _timestamp("updated_at", nullable=False, server_default=NOW),
)
