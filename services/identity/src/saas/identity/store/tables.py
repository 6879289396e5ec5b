"""The tables of schema `identity`, as runtime code sees them (the migrations create them)."""

from __future__ import annotations

import sqlalchemy as sa

SCHEMA = "identity"  # alembic.ini's [identity] section names it for migrations
metadata = sa.MetaData(schema=SCHEMA)
NOW = sa.func.now()


def _timestamp(name: str, **kwargs) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),  # normalised: trimmed, lowercased
    sa.Column("password_hash", sa.String(200), nullable=False),
    _timestamp("email_verified_at"),
    sa.Column("platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locks", sa.Integer, nullable=False, server_default="0"),
    _timestamp("locked_until"),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("updated_at", nullable=False, server_default=NOW),
)

address_failures = sa.Table(
    "address_failures",
    metadata,
    sa.Column("address", sa.String(64), primary_key=True),
    _timestamp("window_started_at", nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    _timestamp("blocked_until"),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("algorithm", sa.String(20), nullable=False),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("private_key", sa.LargeBinary),  # AES-GCM sealed; wiped when the key retires
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("retired_at"),
)

refresh_families = sa.Table(
    "refresh_families",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("identity.users.id", ondelete="CASCADE")),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("revoked_at"),
    sa.Column("revoked_reason", sa.String(40)),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.LargeBinary, primary_key=True),  # SHA-256 of the token
    sa.Column(
        "family_id", sa.Uuid, sa.ForeignKey("identity.refresh_families.id", ondelete="CASCADE")
    ),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("expires_at", nullable=False),
    _timestamp("used_at"),  # rotated: presenting it again is reuse
)

one_time_tokens = sa.Table(
    "one_time_tokens",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # the token's public half
    sa.Column("purpose", sa.String(20), nullable=False),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("identity.users.id", ondelete="CASCADE")),
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),  # SHA-256 of the secret half
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("expires_at", nullable=False),
    _timestamp("used_at"),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("identity.users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("role", sa.String(10), nullable=False),
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("updated_at", nullable=False, server_default=NOW),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("tenant_id", sa.Uuid, nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("invited_by", sa.Uuid),
    sa.Column("secret_hash", sa.LargeBinary),  # set when the mail goes out
    _timestamp("created_at", nullable=False, server_default=NOW),
    _timestamp("expires_at", nullable=False),
    _timestamp("accepted_at"),
    sa.Column("accepted_by", sa.Uuid),
    _timestamp("revoked_at"),  # superseded by a newer invitation to the same address
)
