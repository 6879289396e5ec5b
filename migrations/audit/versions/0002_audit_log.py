"""The append-only, hash-chained audit log.

Append-only is enforced by the database: the role the audit service runs as (`audit_writer`)
may only SELECT and INSERT, and triggers refuse UPDATE, DELETE and TRUNCATE for everyone else,
owners included. A superuser can still bypass triggers; the hash chain is what catches that.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from saas.common.events.tables import create_processed_v1

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WRITER_ROLE = "audit_writer"


def upgrade() -> None:
    create_processed_v1(op, "audit")
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("tenant_key", sa.String(100), nullable=False),
        sa.Column("tenant_seq", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200)),
        sa.Column("actor_type", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("correlation_id", sa.String(200)),
        sa.Column("data_version", sa.Integer, nullable=False),
        sa.Column("payload", sa.dialects.postgresql.JSONB, nullable=False),
        sa.Column("prev_hash", sa.CHAR(64), nullable=False),
        sa.Column("hash", sa.CHAR(64), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
        sa.UniqueConstraint("tenant_key", "tenant_seq", name="uq_audit_events_tenant_seq"),
        schema="audit",
    )
    op.create_index(
        "ix_audit_events_tenant_type",
        "events",
        ["tenant_key", "type", "tenant_seq"],
        schema="audit",
    )
    op.create_index(
        "ix_audit_events_tenant_actor",
        "events",
        ["tenant_key", "actor_id", "tenant_seq"],
        schema="audit",
    )
    op.create_index(
        "ix_audit_events_tenant_time", "events", ["tenant_key", "occurred_at"], schema="audit"
    )

    op.execute(
        """
        CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit.events is append-only: % refused', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_refuse_update_delete BEFORE UPDATE OR DELETE ON audit.events "
        "FOR EACH ROW EXECUTE FUNCTION audit.refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON audit.events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()"
    )
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN
                CREATE ROLE {WRITER_ROLE} NOLOGIN;
            END IF;
        END $$
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA audit TO {WRITER_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON audit.events TO {WRITER_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON audit.processed_events TO {WRITER_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA audit TO {WRITER_ROLE}")
    op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON audit.events FROM {WRITER_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON audit.events, audit.processed_events FROM {WRITER_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA audit FROM {WRITER_ROLE}")
    op.drop_table("events", schema="audit")
    op.execute("DROP FUNCTION audit.refuse_change()")
    op.drop_table("processed_events", schema="audit")
