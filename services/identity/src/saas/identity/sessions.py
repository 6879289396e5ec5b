"""Sessions: login, refresh-token rotation with reuse detection, logout.

A login opens a refresh-token family (its id is the access token's `sid`). Each refresh marks the
presented token used and issues the next one in the same family; presenting a used token again
means two parties hold the family (a stolen token, or its legitimate owner after the thief), so
the whole family is revoked and `auth.refresh_token_reused` published. Concurrent refreshes with
one token are serialised by a row lock: exactly one wins and the other is reuse.

Failed logins are counted per account and per client address (`lockout.py`). An unknown address,
a wrong password and a locked account all get the same answer after the same work (a password
verification, against a dummy hash when there is no account).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.contracts.identity import (
    Done,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    TokenPair,
)
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.catalogue import (
    RefreshTokenReused,
    UserAccountLocked,
    UserLoggedIn,
    UserLoggedOut,
    UserLoginFailed,
)
from saas.identity.accounts import normalise_email
from saas.identity.deps import Deps
from saas.identity.events import Origin, publish
from saas.identity.keys import Signer
from saas.identity.lockout import (
    AFTER_SUCCESS,
    AccountState,
    AddressState,
    address_after_failure,
    address_blocked,
    after_failure,
    is_locked,
)
from saas.identity.store.tables import address_failures, refresh_families, refresh_tokens, users
from saas.identity.tokens import digest, new_refresh_token, sign_access_token

INVALID_CREDENTIALS = "invalid email or password"
INVALID_REFRESH = "invalid or expired refresh token"


def now() -> datetime:
    return datetime.now(UTC)


# -- login ---------------------------------------------------------------------------------------
async def login(deps: Deps, request: LoginRequest, origin: Origin) -> TokenPair:
    email = normalise_email(request.email)
    address = origin.ip_address
    at = now()
    async with deps.db.session() as session:
        row = (await session.execute(_LOGIN_LOOKUP, {"email": email, "address": address})).one()
    # Refused without checking any password, so a flood from one address costs no hashing.
    if address and address_blocked(_address_of(row), at):
        raise ServiceError(
            ErrorCode.RATE_LIMITED,
            "too many failed logins from this address; try again later",
            {"retry_after": int(deps.lockout.address_block)},
        )
    user = row if row.id is not None else None
    # No transaction is held while hashing: it takes tens of milliseconds.
    if user is None:
        await deps.passwords.verify_nobody(request.password)
        await _failed(deps, origin, email, None, "unknown_email")
    locked = is_locked(AccountState(user.failed_logins, user.locks, user.locked_until), at)
    correct = await deps.passwords.verify(user.password_hash, request.password)
    if locked or not correct:  # a locked account answers exactly as a wrong password does
        await _failed(
            deps, origin, email, user.id, "account_locked" if locked else "wrong_password"
        )
    new_hash = None
    if deps.passwords.needs_rehash(user.password_hash):  # parameters changed since it was made
        new_hash = await deps.passwords.hash(request.password)
    signer = await deps.keys.signer()
    origin = origin.as_user(str(user.id))
    async with deps.db.session() as session:
        values = {}
        if (user.failed_logins, user.locks, user.locked_until) != (
            AFTER_SUCCESS.failed_logins,
            AFTER_SUCCESS.locks,
            AFTER_SUCCESS.locked_until,
        ):  # most logins follow no failure: no write for them
            values = {
                "failed_logins": AFTER_SUCCESS.failed_logins,
                "locks": AFTER_SUCCESS.locks,
                "locked_until": AFTER_SUCCESS.locked_until,
            }
        if new_hash is not None:
            values |= {"password_hash": new_hash, "updated_at": sa.func.now()}
        if values:
            await session.execute(sa.update(users).where(users.c.id == user.id).values(**values))
        pair = await _issue(
            deps, session, signer, user.id, uuid.uuid4(), user.platform_admin, new_family=True
        )
        await publish(
            session,
            origin,
            UserLoggedIn(user_id=str(user.id), ip_address=address),
            subject=str(user.id),
        )
    return pair


async def _failed(
    deps: Deps, origin: Origin, email: str, user_id: uuid.UUID | None, reason: str
) -> NoReturn:
    """Count the failure against the address and the account, record it, answer 401."""
    at = now()
    async with deps.db.session() as session:
        if origin.ip_address:
            await _count_address_failure(deps, session, origin.ip_address, at)
        if user_id is not None and reason == "wrong_password":
            await _count_account_failure(deps, session, user_id, origin, at)
        await publish(
            session,
            origin,
            UserLoginFailed(email=email, reason=reason, ip_address=origin.ip_address),
            subject=str(user_id) if user_id else None,
        )
    raise ServiceError(ErrorCode.UNAUTHORIZED, INVALID_CREDENTIALS)


async def _count_account_failure(
    deps: Deps, session: AsyncSession, user_id: uuid.UUID, origin: Origin, at: datetime
) -> None:
    row = (
        await session.execute(
            sa.select(users.c.failed_logins, users.c.locks, users.c.locked_until)
            .where(users.c.id == user_id)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        return
    state = AccountState(row.failed_logins, row.locks, row.locked_until)
    if is_locked(state, at):  # locked meanwhile by a concurrent attempt: nothing more to count
        return
    new = after_failure(deps.lockout, state, at)
    await session.execute(
        sa.update(users)
        .where(users.c.id == user_id)
        .values(failed_logins=new.failed_logins, locks=new.locks, locked_until=new.locked_until)
    )
    if new.locks > state.locks and new.locked_until is not None:
        await publish(
            session,
            origin,
            UserAccountLocked(
                user_id=str(user_id), locked_until=new.locked_until, ip_address=origin.ip_address
            ),
            subject=str(user_id),
        )


# Built once: building a statement and its cache key costs more Python than running it does.
_ONE_ROW = sa.select(sa.literal_column("1").label("one")).subquery("one")
# A login's one read, one row whether or not the account exists: the account's columns (nulls
# when there is none) and the client address's failure record (nulls when it has none, or when
# there is no address: `address = NULL` matches nothing).
_LOGIN_LOOKUP = sa.select(
    users.c.id,
    users.c.password_hash,
    users.c.platform_admin,
    users.c.failed_logins,
    users.c.locks,
    users.c.locked_until,
    address_failures.c.window_started_at,
    address_failures.c.failures,
    address_failures.c.blocked_until,
).select_from(
    _ONE_ROW.outerjoin(users, users.c.email == sa.bindparam("email")).outerjoin(
        address_failures, address_failures.c.address == sa.bindparam("address")
    )
)
_INSERT_REFRESH_TOKEN = sa.insert(refresh_tokens).values(
    token_hash=sa.bindparam("token_hash"),
    family_id=sa.bindparam("family_id"),
    expires_at=sa.bindparam("expires_at"),
)
# A login's new family, in the statement of its first token: the token's foreign key is checked
# at the statement's end, when the family is there.
_INSERT_FAMILY_AND_REFRESH_TOKEN = _INSERT_REFRESH_TOKEN.add_cte(
    sa.insert(refresh_families)
    .values(id=sa.bindparam("family_id"), user_id=sa.bindparam("user_id"))
    .cte("family")
)


def _address_of(row) -> AddressState | None:
    if row.window_started_at is None:
        return None
    return AddressState(row.window_started_at, row.failures, row.blocked_until)


async def _locked_address_state(session: AsyncSession, address: str) -> AddressState | None:
    query = sa.select(address_failures).where(address_failures.c.address == address)
    row = (await session.execute(query.with_for_update())).one_or_none()
    return _address_of(row) if row else None


async def _count_address_failure(
    deps: Deps, session: AsyncSession, address: str, at: datetime
) -> None:
    await session.execute(
        insert(address_failures)
        .values(address=address, window_started_at=at, failures=0)
        .on_conflict_do_nothing()
    )
    new = address_after_failure(deps.lockout, await _locked_address_state(session, address), at)
    await session.execute(
        sa.update(address_failures)
        .where(address_failures.c.address == address)
        .values(
            window_started_at=new.window_started_at,
            failures=new.failures,
            blocked_until=new.blocked_until,
        )
    )


# -- tokens --------------------------------------------------------------------------------------
async def _issue(
    deps: Deps,
    session: AsyncSession,
    signer: Signer,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    platform_admin: bool,
    *,
    new_family: bool = False,
) -> TokenPair:
    """A refresh token of the family and an access token; with `new_family`, the family is
    created in the same statement (a login)."""
    s = deps.settings
    refresh, refresh_hash = new_refresh_token()
    token = {
        "token_hash": refresh_hash,
        "family_id": family_id,
        "expires_at": now() + timedelta(seconds=s.refresh_token_ttl),
    }
    if new_family:
        await session.execute(_INSERT_FAMILY_AND_REFRESH_TOKEN, {**token, "user_id": user_id})
    else:
        await session.execute(_INSERT_REFRESH_TOKEN, token)
    access = sign_access_token(
        key=signer.key,
        kid=signer.kid,
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        user_id=str(user_id),
        session_id=str(family_id),
        platform_admin=platform_admin,
        now=int(time.time()),
        ttl=s.access_token_ttl,
    )
    return TokenPair(
        access_token=access.token,
        expires_in=access.expires_in,
        refresh_token=refresh,
        refresh_expires_in=s.refresh_token_ttl,
    )


@dataclass(frozen=True)
class _Presented:
    family_id: uuid.UUID
    user_id: uuid.UUID
    platform_admin: bool
    family_revoked: bool
    used: bool
    expired: bool


# The presented refresh token's row and family, locked for the rest of the transaction.
_PRESENTED = (
    sa.select(
        refresh_tokens.c.used_at,
        refresh_tokens.c.expires_at,
        refresh_families.c.id.label("family_id"),
        refresh_families.c.revoked_at,
        users.c.id.label("user_id"),
        users.c.platform_admin,
    )
    .join(refresh_families, refresh_families.c.id == refresh_tokens.c.family_id)
    .join(users, users.c.id == refresh_families.c.user_id)
    .where(refresh_tokens.c.token_hash == sa.bindparam("token_hash"))
    .with_for_update(of=[refresh_tokens, refresh_families])
)
_MARK_USED = (
    sa.update(refresh_tokens)
    .where(refresh_tokens.c.token_hash == sa.bindparam("presented_hash"))
    .values(used_at=sa.func.now())
)


async def _presented(session: AsyncSession, token: str) -> _Presented | None:
    """The presented refresh token's row and family, locked for the rest of the transaction."""
    row = (await session.execute(_PRESENTED, {"token_hash": digest(token)})).one_or_none()
    if row is None:
        return None
    return _Presented(
        family_id=row.family_id,
        user_id=row.user_id,
        platform_admin=row.platform_admin,
        family_revoked=row.revoked_at is not None,
        used=row.used_at is not None,
        expired=row.expires_at <= now(),
    )


async def refresh(deps: Deps, request: RefreshRequest, origin: Origin) -> TokenPair:
    signer = await deps.keys.signer()
    reused = False
    async with deps.db.session() as session:
        presented = await _presented(session, request.refresh_token)
        if presented is None or presented.family_revoked or presented.expired:
            pair = None
        elif presented.used:
            await _revoke_families(session, family_id=presented.family_id, reason="reuse")
            await publish(
                session,
                origin,
                RefreshTokenReused(
                    user_id=str(presented.user_id),
                    family_id=str(presented.family_id),
                    ip_address=origin.ip_address,
                ),
                subject=str(presented.user_id),
            )
            pair, reused = None, True
        else:
            await session.execute(_MARK_USED, {"presented_hash": digest(request.refresh_token)})
            pair = await _issue(
                deps,
                session,
                signer,
                presented.user_id,
                presented.family_id,
                presented.platform_admin,
            )
    # Raised after the commit, so a detected reuse stays revoked.
    if pair is None:
        raise ServiceError(
            ErrorCode.UNAUTHORIZED,
            "this refresh token was already used; every session it belonged to has ended"
            if reused
            else INVALID_REFRESH,
        )
    return pair


async def _revoke_families(
    session: AsyncSession,
    *,
    reason: str,
    family_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
) -> None:
    condition = (
        refresh_families.c.id == family_id
        if family_id is not None
        else refresh_families.c.user_id == user_id
    )
    await session.execute(
        sa.update(refresh_families)
        .where(condition, refresh_families.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now(), revoked_reason=reason)
    )


async def logout(deps: Deps, request: LogoutRequest, origin: Origin) -> Done:
    """Revoke the token's family (or every family of its user); an unknown token changes nothing
    and gets the same answer."""
    async with deps.db.session() as session:
        presented = await _presented(session, request.refresh_token)
        if presented is not None:
            if request.everywhere:
                await _revoke_families(session, user_id=presented.user_id, reason="logout_all")
            else:
                await _revoke_families(session, family_id=presented.family_id, reason="logout")
            await publish(
                session,
                origin.as_user(str(presented.user_id)),
                UserLoggedOut(
                    user_id=str(presented.user_id),
                    family_id=None if request.everywhere else str(presented.family_id),
                    everywhere=request.everywhere,
                ),
                subject=str(presented.user_id),
            )
    return Done()
