"""Tenant lifecycle: who created a tenant, why it failed, when its status changed; each workflow
run and its current step; `Idempotency-Key`s of tenant creation; backups of tenant schemas.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "public"


def _timestamp(name: str, **kwargs) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


def upgrade() -> None:
    # Tenants from before this revision have no creator: nullable.
    op.add_column("tenants", sa.Column("created_by", sa.Uuid), schema=SCHEMA)
    op.add_column("tenants", sa.Column("failure_reason", sa.Text), schema=SCHEMA)
    op.add_column(
        "tenants",
        _timestamp("status_changed_at", nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.add_column("tenants", _timestamp("deleted_at"), schema=SCHEMA)
    # Slugs are unique case-insensitively: the service lowercases nothing and refuses capitals,
    # and the database keeps it so for any other writer (so uq_tenants_slug is enough).
    op.create_check_constraint(
        "ck_tenants_slug_lowercase", "tenants", "slug = lower(slug)", schema=SCHEMA
    )
    # "My tenants" adds those I created that are not ready (I am not a member of them yet).
    op.create_index(
        "ix_tenants_created_by_unfinished",
        "tenants",
        ["created_by"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('provisioning', 'failed')"),
    )
    # The reconciler looks for tenants whose workflow should be running.
    op.create_index(
        "ix_tenants_in_flight",
        "tenants",
        ["status_changed_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status IN ('provisioning', 'deleting')"),
    )

    op.add_column("workflow_executions", sa.Column("run_id", sa.String(100)), schema=SCHEMA)
    op.add_column("workflow_executions", sa.Column("step", sa.String(50)), schema=SCHEMA)
    op.add_column("workflow_executions", _timestamp("finished_at"), schema=SCHEMA)
    op.create_unique_constraint(
        "uq_workflow_executions_run",
        "workflow_executions",
        ["workflow_id", "run_id"],
        schema=SCHEMA,
    )
    op.create_check_constraint(
        "ck_workflow_executions_status",
        "workflow_executions",
        "status IN ('running', 'completed', 'failed')",
        schema=SCHEMA,
    )

    op.create_table(
        "tenant_idempotency_keys",
        sa.Column("user_id", sa.Uuid, primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.LargeBinary, nullable=False),  # SHA-256 of the request
        sa.Column(
            "tenant_id",
            sa.Uuid,
            sa.ForeignKey("public.tenants.id", name="fk_tenant_idempotency_keys_tenant"),
            nullable=False,
        ),
        _timestamp("created_at", nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_tenant_idempotency_keys_created_at",
        "tenant_idempotency_keys",
        ["created_at"],
        schema=SCHEMA,
    )

    op.create_table(
        "tenant_backups",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Uuid,
            sa.ForeignKey("public.tenants.id", name="fk_tenant_backups_tenant"),
            nullable=False,
        ),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.String(32)),
        sa.Column("reason", sa.String(20), nullable=False),
        _timestamp("taken_at", nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("reason IN ('deletion', 'operator')", name="ck_tenant_backups_reason"),
        schema=SCHEMA,
    )
    op.create_index("ix_tenant_backups_tenant_id", "tenant_backups", ["tenant_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("tenant_backups", schema=SCHEMA)
    op.drop_table("tenant_idempotency_keys", schema=SCHEMA)
    op.drop_constraint("ck_workflow_executions_status", "workflow_executions", schema=SCHEMA)
    op.drop_constraint("uq_workflow_executions_run", "workflow_executions", schema=SCHEMA)
    for column in ("finished_at", "step", "run_id"):
        op.drop_column("workflow_executions", column, schema=SCHEMA)
    op.drop_index("ix_tenants_in_flight", "tenants", schema=SCHEMA)
    op.drop_index("ix_tenants_created_by_unfinished", "tenants", schema=SCHEMA)
    op.drop_constraint("ck_tenants_slug_lowercase", "tenants", schema=SCHEMA)
    for column in ("deleted_at", "status_changed_at", "failure_reason", "created_by"):
        op.drop_column("tenants", column, schema=SCHEMA)
