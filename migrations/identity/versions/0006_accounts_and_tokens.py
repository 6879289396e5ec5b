"""Users, signing keys, refresh-token families, single-use tokens, failed-login counters,
memberships and invitations (schema identity).

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

SCHEMA = "identity"
ROLES = "role IN ('owner','admin','member')"


def ts(name: str, **kwargs) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


def now(name: str) -> sa.Column:
    return ts(name, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        ts("email_verified_at"),
        sa.Column("platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locks", sa.Integer, nullable=False, server_default="0"),
        ts("locked_until"),
        now("created_at"),
        now("updated_at"),
        # Addresses are stored normalised; the check keeps it so, the index keeps them unique.
        sa.CheckConstraint("email = lower(btrim(email))", name="ck_users_email_normalised"),
        schema=SCHEMA,
    )
    op.create_index(
        "uq_users_email", "users", [sa.text("lower(email)")], unique=True, schema=SCHEMA
    )

    op.create_table(
        "address_failures",
        sa.Column("address", sa.String(64), primary_key=True),
        ts("window_started_at", nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        ts("blocked_until"),
        schema=SCHEMA,
    )

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("private_key", sa.LargeBinary),
        now("created_at"),
        ts("retired_at"),
        sa.CheckConstraint(
            "retired_at IS NOT NULL OR private_key IS NOT NULL",
            name="ck_signing_keys_active_has_private_key",
        ),
        schema=SCHEMA,
    )
    # At most one key signs at a time, whatever replicas race to create or rotate one.
    op.create_index(
        "uq_signing_keys_one_active",
        "signing_keys",
        [sa.text("(true)")],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("retired_at IS NULL"),
    )

    op.create_table(
        "refresh_families",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE", name="fk_families_user"),
            nullable=False,
        ),
        now("created_at"),
        ts("revoked_at"),
        sa.Column("revoked_reason", sa.String(40)),
        schema=SCHEMA,
    )
    op.create_index("ix_refresh_families_user_id", "refresh_families", ["user_id"], schema=SCHEMA)

    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column(
            "family_id",
            sa.Uuid,
            sa.ForeignKey(
                f"{SCHEMA}.refresh_families.id", ondelete="CASCADE", name="fk_tokens_family"
            ),
            nullable=False,
        ),
        now("created_at"),
        ts("expires_at", nullable=False),
        ts("used_at"),
        schema=SCHEMA,
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"], schema=SCHEMA)
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"], schema=SCHEMA)

    op.create_table(
        "one_time_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE", name="fk_one_time_user"),
            nullable=False,
        ),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        now("created_at"),
        ts("expires_at", nullable=False),
        ts("used_at"),
        sa.CheckConstraint(
            "purpose IN ('verify_email','password_reset')", name="ck_one_time_tokens_purpose"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_one_time_tokens_user_purpose", "one_time_tokens", ["user_id", "purpose"], schema=SCHEMA
    )
    op.create_index(
        "ix_one_time_tokens_expires_at", "one_time_tokens", ["expires_at"], schema=SCHEMA
    )

    op.create_table(
        "memberships",
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column(
            "user_id",
            sa.Uuid,
            sa.ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE", name="fk_memberships_user"),
            nullable=False,
        ),
        sa.Column("role", sa.String(10), nullable=False),
        now("created_at"),
        now("updated_at"),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name="pk_memberships"),
        sa.CheckConstraint(ROLES, name="ck_memberships_role"),
        schema=SCHEMA,
    )
    op.create_index("ix_memberships_user_id", "memberships", ["user_id"], schema=SCHEMA)

    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("invited_by", sa.Uuid),
        sa.Column("secret_hash", sa.LargeBinary),
        now("created_at"),
        ts("expires_at", nullable=False),
        ts("accepted_at"),
        sa.Column("accepted_by", sa.Uuid),
        ts("revoked_at"),
        sa.CheckConstraint(ROLES, name="ck_invitations_role"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_invitations_tenant_email", "invitations", ["tenant_id", "email"], schema=SCHEMA
    )


def downgrade() -> None:
    for table in (
        "invitations",
        "memberships",
        "one_time_tokens",
        "refresh_tokens",
        "refresh_families",
        "signing_keys",
        "address_failures",
        "users",
    ):
        op.drop_table(table, schema=SCHEMA)
