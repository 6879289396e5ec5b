"""Accounts: sign-up, email verification, password reset, and what a user sees of themselves.

Nothing here tells a caller whether an address has an account: sign-up and reset requests give
the same answer either way, after the same work (sign-up hashes the password in both cases).
The mail itself (verification link, "someone tried to sign up with your address", reset link)
is sent by the mail consumer (`mail.py`) from the events written here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.contracts.identity import (
    Accepted,
    Done,
    MyTenant,
    MyTenants,
    PasswordResetConfirm,
    PasswordResetRequest,
    RegisterRequest,
    Role,
    User,
    VerifyEmailRequest,
)
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.catalogue import (
    UserDuplicateRegistration,
    UserEmailVerified,
    UserPasswordReset,
    UserPasswordResetRequested,
    UserRegistered,
)
from saas.common.tokens import Claims
from saas.identity.deps import Deps
from saas.identity.events import Origin, publish
from saas.identity.passwords import check_password
from saas.identity.store.tables import memberships, one_time_tokens, refresh_families, users
from saas.identity.tokens import new_single_use_token, secret_matches, split_single_use_token

VERIFY_EMAIL = "verify_email"
PASSWORD_RESET = "password_reset"

SIGN_UP_ACCEPTED = Accepted(
    message="Thanks. We have sent a message to that address: follow its link to continue."
)
RESET_ACCEPTED = Accepted(
    message="If that address has an account, a message with a reset link is on its way to it."
)
INVALID_LINK = "this link is invalid, used or expired"


def normalise_email(email: str) -> str:
    """The one form an address is stored and compared in: trimmed and lowercased."""
    return email.strip().lower()


def now() -> datetime:
    return datetime.now(UTC)


# -- sign-up -------------------------------------------------------------------------------------
async def register(deps: Deps, request: RegisterRequest, origin: Origin) -> Accepted:
    email = normalise_email(request.email)
    check_password(request.password, min_length=deps.settings.password_min_length, email=email)
    # Hashed whether or not the address is taken: the answer must not come back faster for one.
    password_hash = await deps.passwords.hash(request.password)
    user_id = uuid.uuid4()
    async with deps.db.session() as session:
        inserted = (
            await session.execute(
                insert(users)
                .values(id=user_id, email=email, password_hash=password_hash)
                .on_conflict_do_nothing()
                .returning(users.c.id)
            )
        ).scalar_one_or_none()
        if inserted is not None:
            await publish(
                session,
                origin.as_user(str(user_id)),
                UserRegistered(user_id=str(user_id), email=email, ip_address=origin.ip_address),
                subject=str(user_id),
            )
        else:
            owner = (
                await session.execute(sa.select(users.c.id).where(users.c.email == email))
            ).scalar_one()
            await publish(
                session,
                origin,
                UserDuplicateRegistration(user_id=str(owner), ip_address=origin.ip_address),
                subject=str(owner),
            )
    return SIGN_UP_ACCEPTED


# -- single-use tokens (sent by mail) ------------------------------------------------------------
async def issue_token(session: AsyncSession, user_id: uuid.UUID, purpose: str, ttl: float) -> str:
    """A new single-use token for the user; only its hash is stored. For the mail consumer."""
    token_id = uuid.uuid4()
    token, secret_hash = new_single_use_token(token_id)
    await session.execute(
        sa.insert(one_time_tokens).values(
            id=token_id,
            purpose=purpose,
            user_id=user_id,
            secret_hash=secret_hash,
            expires_at=now() + timedelta(seconds=ttl),
        )
    )
    return token


async def _redeemable(session: AsyncSession, token: str, purpose: str, *, lock: bool):
    """The token's row if the token is genuine, unused and unexpired; else `bad_request`."""
    parts = split_single_use_token(token)
    row = None
    if parts is not None:
        query = sa.select(one_time_tokens).where(
            one_time_tokens.c.id == parts[0], one_time_tokens.c.purpose == purpose
        )
        row = (await session.execute(query.with_for_update() if lock else query)).one_or_none()
    secret = parts[1] if parts else ""
    if (
        row is None
        or not secret_matches(secret, row.secret_hash)
        or row.used_at is not None
        or row.expires_at <= now()
    ):
        raise ServiceError(ErrorCode.BAD_REQUEST, INVALID_LINK)
    return row


async def mark_verified(session: AsyncSession, user_id: uuid.UUID, origin: Origin) -> None:
    verified = (
        await session.execute(
            sa.update(users)
            .where(users.c.id == user_id, users.c.email_verified_at.is_(None))
            .values(email_verified_at=sa.func.now(), updated_at=sa.func.now())
            .returning(users.c.id)
        )
    ).scalar_one_or_none()
    if verified is not None:
        await publish(
            session,
            origin.as_user(str(user_id)),
            UserEmailVerified(user_id=str(user_id)),
            subject=str(user_id),
        )


async def verify_email(deps: Deps, request: VerifyEmailRequest, origin: Origin) -> Done:
    async with deps.db.session() as session:
        row = await _redeemable(session, request.token, VERIFY_EMAIL, lock=True)
        await session.execute(
            sa.update(one_time_tokens)
            .where(one_time_tokens.c.id == row.id)
            .values(used_at=sa.func.now())
        )
        await mark_verified(session, row.user_id, origin)
    return Done()


# -- password reset ------------------------------------------------------------------------------
async def request_password_reset(
    deps: Deps, request: PasswordResetRequest, origin: Origin
) -> Accepted:
    email = normalise_email(request.email)
    async with deps.db.session() as session:
        user_id = (
            await session.execute(sa.select(users.c.id).where(users.c.email == email))
        ).scalar_one_or_none()
        if user_id is not None:
            await publish(
                session,
                origin,
                UserPasswordResetRequested(user_id=str(user_id), ip_address=origin.ip_address),
                subject=str(user_id),
            )
    return RESET_ACCEPTED


async def confirm_password_reset(deps: Deps, request: PasswordResetConfirm, origin: Origin) -> Done:
    min_length = deps.settings.password_min_length
    check_password(request.new_password, min_length=min_length, field="new_password")
    async with deps.db.session() as session:  # a first look, so a bad link costs no hashing
        row = await _redeemable(session, request.token, PASSWORD_RESET, lock=False)
        email = (
            await session.execute(sa.select(users.c.email).where(users.c.id == row.user_id))
        ).scalar_one()
    check_password(request.new_password, min_length=min_length, field="new_password", email=email)
    password_hash = await deps.passwords.hash(request.new_password)
    async with deps.db.session() as session:
        row = await _redeemable(session, request.token, PASSWORD_RESET, lock=True)
        user_id = row.user_id
        await session.execute(
            sa.update(one_time_tokens)
            .where(
                one_time_tokens.c.user_id == user_id,
                one_time_tokens.c.purpose == PASSWORD_RESET,
                one_time_tokens.c.used_at.is_(None),
            )
            .values(used_at=sa.func.now())
        )
        await session.execute(
            sa.update(users)
            .where(users.c.id == user_id)
            .values(
                password_hash=password_hash,
                failed_logins=0,
                locks=0,
                locked_until=None,
                updated_at=sa.func.now(),
            )
        )
        # Whoever held a session may have known the old password: every session ends.
        await session.execute(
            sa.update(refresh_families)
            .where(refresh_families.c.user_id == user_id, refresh_families.c.revoked_at.is_(None))
            .values(revoked_at=sa.func.now(), revoked_reason="password_reset")
        )
        await publish(
            session,
            origin.as_user(str(user_id)),
            UserPasswordReset(user_id=str(user_id), ip_address=origin.ip_address),
            subject=str(user_id),
        )
        # The link reached the mailbox: the address is proven too.
        await mark_verified(session, user_id, origin)
    return Done()


# -- the caller ----------------------------------------------------------------------------------
async def me(deps: Deps, claims: Claims) -> User:
    async with deps.db.session() as session:
        row = (
            await session.execute(sa.select(users).where(users.c.id == _user_id(claims)))
        ).one_or_none()
    if row is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this account no longer exists")
    return User(
        id=str(row.id),
        email=row.email,
        email_verified=row.email_verified_at is not None,
        platform_admin=row.platform_admin,
        created_at=row.created_at,
    )


async def my_tenants(deps: Deps, claims: Claims) -> MyTenants:
    async with deps.db.session() as session:
        rows = (
            await session.execute(
                sa.select(memberships.c.tenant_id, memberships.c.role, memberships.c.created_at)
                .where(memberships.c.user_id == _user_id(claims))
                .order_by(memberships.c.created_at, memberships.c.tenant_id)
            )
        ).all()
    return MyTenants(
        items=[
            MyTenant(tenant_id=str(r.tenant_id), role=Role(r.role), since=r.created_at)
            for r in rows
        ]
    )


def _user_id(claims: Claims) -> uuid.UUID:
    try:
        return uuid.UUID(claims.user_id)
    except ValueError:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "this account no longer exists") from None
