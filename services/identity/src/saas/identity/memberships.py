"""Memberships: who belongs to a tenant with which role, and who may change that.

Rules (pure functions below, unit-tested):
- members list the tenant's members; owners and admins change roles and remove members;
- an admin can neither change nor remove an owner, nor make anyone an owner;
- anyone may leave (remove themselves);
- a tenant always keeps an owner: the last one can be neither demoted nor removed.
A caller who is not a member is told the tenant does not exist, as for one that does not.

Every change to a tenant's memberships takes a per-tenant advisory lock first, so two owners
demoting each other at the same moment cannot leave the tenant with none.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.contracts.identity import (
    AddOwner,
    ChangeRole,
    ListMembers,
    Member,
    Members,
    Membership,
    MembershipQuery,
    RemoveMember,
    Role,
)
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.catalogue import MembershipAdded, MembershipRemoved, MembershipRoleChanged
from saas.common.tokens import Claims
from saas.identity.deps import Deps
from saas.identity.events import Origin, publish
from saas.identity.store.tables import invitations, memberships, users

MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
NO_SUCH_TENANT = "no such tenant"
LAST_OWNER = "a tenant keeps at least one owner: make someone else an owner first"


# -- rules (pure) --------------------------------------------------------------------------------
def check_role_change(actor: Role, target: Role, new: Role, owners: int) -> None:
    """May `actor` change a member from `target` to `new`, with `owners` owners today?"""
    if actor not in MANAGERS:
        raise ServiceError(ErrorCode.FORBIDDEN, "changing roles needs the owner or admin role")
    if actor is Role.ADMIN and Role.OWNER in (target, new):
        raise ServiceError(ErrorCode.FORBIDDEN, "only an owner can change an owner or make one")
    if target is Role.OWNER and new is not Role.OWNER and owners <= 1:
        raise ServiceError(ErrorCode.CONFLICT, LAST_OWNER)


def check_removal(actor: Role, target: Role, owners: int, *, leaving: bool) -> None:
    """May `actor` remove a member whose role is `target` (`leaving`: the member themselves)?"""
    if not leaving:
        if actor not in MANAGERS:
            raise ServiceError(
                ErrorCode.FORBIDDEN, "removing members needs the owner or admin role"
            )
        if actor is Role.ADMIN and target is Role.OWNER:
            raise ServiceError(ErrorCode.FORBIDDEN, "only an owner can remove an owner")
    if target is Role.OWNER and owners <= 1:
        raise ServiceError(ErrorCode.CONFLICT, LAST_OWNER)


# -- queries -------------------------------------------------------------------------------------
def as_uuid(value: str, what: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ServiceError(ErrorCode.NOT_FOUND, f"no such {what}") from None


async def role_in(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
    role = (
        await session.execute(
            sa.select(memberships.c.role).where(
                memberships.c.tenant_id == tenant_id, memberships.c.user_id == user_id
            )
        )
    ).scalar_one_or_none()
    return Role(role) if role else None


async def caller_role(session: AsyncSession, tenant_id: uuid.UUID, claims: Claims) -> Role:
    """The caller's role in the tenant; a non-member is told there is no such tenant."""
    role = await role_in(session, tenant_id, as_uuid(claims.user_id, "tenant"))
    if role is None:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
    return role


async def lock_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    await session.execute(
        sa.select(
            sa.func.pg_advisory_xact_lock(
                sa.func.hashtext("identity.memberships"), sa.func.hashtext(str(tenant_id))
            )
        )
    )


async def _owners(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    return (
        await session.execute(
            sa.select(sa.func.count()).where(
                memberships.c.tenant_id == tenant_id, memberships.c.role == Role.OWNER.value
            )
        )
    ).scalar_one()


def _encode_cursor(since: datetime, user_id: uuid.UUID) -> str:
    raw = orjson.dumps({"t": since.isoformat(), "u": str(user_id)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(doc["t"]), uuid.UUID(doc["u"])
    except Exception:
        raise ServiceError(ErrorCode.BAD_REQUEST, "cursor is not one this service issued") from None


# -- operations ----------------------------------------------------------------------------------
async def list_members(deps: Deps, claims: Claims, request: ListMembers) -> Members:
    tenant_id = as_uuid(request.tenant_id, "tenant")
    async with deps.db.session() as session:
        if not claims.platform_admin:  # operators may look at any tenant's members
            await caller_role(session, tenant_id, claims)
        query = (
            sa.select(
                memberships.c.user_id, memberships.c.role, memberships.c.created_at, users.c.email
            )
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.tenant_id == tenant_id)
            .order_by(memberships.c.created_at, memberships.c.user_id)
            .limit(request.limit + 1)
        )
        if request.cursor:
            since, after = _decode_cursor(request.cursor)
            query = query.where(
                sa.tuple_(memberships.c.created_at, memberships.c.user_id) > sa.tuple_(since, after)
            )
        rows = (await session.execute(query)).all()
    items = [
        Member(user_id=str(r.user_id), email=r.email, role=Role(r.role), since=r.created_at)
        for r in rows[: request.limit]
    ]
    last = rows[request.limit - 1] if len(rows) > request.limit else None
    return Members(
        items=items, next_cursor=_encode_cursor(last.created_at, last.user_id) if last else None
    )


async def _member(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Member:
    row = (
        await session.execute(
            sa.select(memberships.c.role, memberships.c.created_at, users.c.email)
            .join(users, users.c.id == memberships.c.user_id)
            .where(memberships.c.tenant_id == tenant_id, memberships.c.user_id == user_id)
        )
    ).one_or_none()
    if row is None:
        raise ServiceError(ErrorCode.NOT_FOUND, "no such member")
    return Member(user_id=str(user_id), email=row.email, role=Role(row.role), since=row.created_at)


async def change_role(deps: Deps, claims: Claims, request: ChangeRole, origin: Origin) -> Member:
    tenant_id = as_uuid(request.tenant_id, "tenant")
    target_id = as_uuid(request.user_id, "member")
    async with deps.db.session() as session:
        await lock_tenant(session, tenant_id)
        actor = await caller_role(session, tenant_id, claims)
        target = await _member(session, tenant_id, target_id)
        check_role_change(actor, target.role, request.role, await _owners(session, tenant_id))
        if target.role is request.role:
            return target
        await set_role(session, tenant_id, target_id, target.role, request.role, origin)
    return target.model_copy(update={"role": request.role})


async def remove_member(deps: Deps, claims: Claims, request: RemoveMember, origin: Origin) -> None:
    tenant_id = as_uuid(request.tenant_id, "tenant")
    target_id = as_uuid(request.user_id, "member")
    async with deps.db.session() as session:
        await lock_tenant(session, tenant_id)
        actor = await caller_role(session, tenant_id, claims)
        target = await _member(session, tenant_id, target_id)
        leaving = str(target_id) == claims.user_id
        check_removal(actor, target.role, await _owners(session, tenant_id), leaving=leaving)
        await session.execute(
            sa.delete(memberships).where(
                memberships.c.tenant_id == tenant_id, memberships.c.user_id == target_id
            )
        )
        await publish(
            session,
            origin,
            MembershipRemoved(tenant_id=str(tenant_id), user_id=str(target_id)),
            tenant_id=str(tenant_id),
            subject=str(target_id),
        )


async def add_member(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID, role: Role, origin: Origin
) -> bool:
    """Insert a membership (in the caller's transaction); False if the user already is a member."""
    inserted = (
        await session.execute(
            insert(memberships)
            .values(tenant_id=tenant_id, user_id=user_id, role=role.value)
            .on_conflict_do_nothing()
            .returning(memberships.c.user_id)
        )
    ).scalar_one_or_none()
    if inserted is not None:
        await publish(
            session,
            origin,
            MembershipAdded(tenant_id=str(tenant_id), user_id=str(user_id), role=role.value),
            tenant_id=str(tenant_id),
            subject=str(user_id),
        )
    return inserted is not None


async def set_role(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    old: Role,
    new: Role,
    origin: Origin,
) -> None:
    """Change a member's role (in the caller's transaction) and say so."""
    await session.execute(
        sa.update(memberships)
        .where(memberships.c.tenant_id == tenant_id, memberships.c.user_id == user_id)
        .values(role=new.value, updated_at=sa.func.now())
    )
    await publish(
        session,
        origin,
        MembershipRoleChanged(
            tenant_id=str(tenant_id), user_id=str(user_id), old_role=old.value, new_role=new.value
        ),
        tenant_id=str(tenant_id),
        subject=str(user_id),
    )


# -- between services ----------------------------------------------------------------------------
async def add_owner(deps: Deps, request: AddOwner, origin: Origin) -> Membership:
    """Tenancy makes a tenant's creator its owner while provisioning; asking again changes
    nothing, and a member already there becomes an owner."""
    tenant_id = as_uuid(request.tenant_id, "tenant")
    user_id = as_uuid(request.user_id, "user")
    async with deps.db.session() as session:
        await lock_tenant(session, tenant_id)
        exists = (
            await session.execute(sa.select(users.c.id).where(users.c.id == user_id))
        ).scalar_one_or_none()
        if exists is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such user")
        current = await role_in(session, tenant_id, user_id)
        if current is None:
            await add_member(session, tenant_id, user_id, Role.OWNER, origin)
        elif current is not Role.OWNER:
            await set_role(session, tenant_id, user_id, current, Role.OWNER, origin)
    return Membership(tenant_id=str(tenant_id), user_id=str(user_id), role=Role.OWNER)


async def membership(deps: Deps, request: MembershipQuery) -> Membership:
    """A user's role in a tenant (None when not a member), for other services' checks."""
    try:
        tenant_id, user_id = uuid.UUID(request.tenant_id), uuid.UUID(request.user_id)
    except ValueError:
        return Membership(tenant_id=request.tenant_id, user_id=request.user_id, role=None)
    async with deps.db.session() as session:
        role = await role_in(session, tenant_id, user_id)
    return Membership(tenant_id=request.tenant_id, user_id=request.user_id, role=role)


async def forget_tenant(session: AsyncSession, tenant_id: str, origin: Origin) -> int:
    """A deleted tenant's memberships and invitations go (in the consumer's transaction)."""
    try:
        tid = uuid.UUID(tenant_id)
    except ValueError:
        return 0  # not an id identity could hold memberships for
    await lock_tenant(session, tid)
    removed = (
        (
            await session.execute(
                sa.delete(memberships)
                .where(memberships.c.tenant_id == tid)
                .returning(memberships.c.user_id)
            )
        )
        .scalars()
        .all()
    )
    await session.execute(sa.delete(invitations).where(invitations.c.tenant_id == tid))
    await publish(
        session,
        origin,
        *(MembershipRemoved(tenant_id=tenant_id, user_id=str(u)) for u in removed),
        tenant_id=tenant_id,
    )
    return len(removed)
