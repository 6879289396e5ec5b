"""Tenants: create one, list mine, look at one, retry a failed one, delete one.

Rules (pure functions below, unit-tested):
- anyone signed in may create a tenant; its slug follows `saas.common.tenant_names` and is never
  used again, even after the tenant is deleted;
- an `Idempotency-Key` makes a create safe to repeat: the same key from the same user with the
  same body gives the same tenant, with another body it is a conflict (keys are kept a day);
- members see their tenant; its creator also sees it while it is provisioning or failed (they
  become its owner only as provisioning ends); platform administrators see any;
- a failed tenant is retried by its creator or an owner; a tenant is deleted by an owner (a failed
  one also by its creator, since it may have no owner yet).

Creating and retrying commit the tenant (`provisioning`, `tenant.provisioning_started` in the
outbox) and then start its workflow in the background; should that start fail, the reconciler
starts it.
"""

from __future__ import annotations

import hashlib
import uuid

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.bus import RequestContext
from saas.common.bus.requests import Empty
from saas.common.contracts.identity import MyTenants, Role
from saas.common.contracts.tenancy import CreateTenant, TenantInfo, Tenants, TenantStatus
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import Actor
from saas.common.events.catalogue import TenantProvisioningStarted
from saas.common.logging import get_logger
from saas.common.tenant_names import InvalidSlugError, validate_slug
from saas.common.tokens import Claims
from saas.tenancy.deps import Deps
from saas.tenancy.directory import Tenant, valid_slug
from saas.tenancy.events import publish
from saas.tenancy.store import records
from saas.tenancy.store.records import NO_SUCH_TENANT
from saas.tenancy.store.tables import idempotency_keys, tenants
from saas.tenancy.workflows.inputs import TenantInput
from saas.tenancy.workflows.starter import start_deletion, start_provisioning

log = get_logger(__name__)
UNFINISHED = frozenset({TenantStatus.PROVISIONING, TenantStatus.FAILED})


# -- rules (pure) --------------------------------------------------------------------------------
def request_fingerprint(request: CreateTenant) -> bytes:
    """What makes two creates the same request (the key itself aside)."""
    return hashlib.sha256(orjson.dumps({"slug": request.slug, "name": request.name})).digest()


def may_see(tenant: Tenant, user: Claims, role: Role | None) -> bool:
    if role is not None or user.platform_admin:
        return True
    return tenant.created_by == user.user_id and tenant.status in UNFINISHED


def may_retry(tenant: Tenant, user: Claims, role: Role | None) -> bool:
    return role is Role.OWNER or tenant.created_by == user.user_id


def may_delete(tenant: Tenant, user: Claims, role: Role | None) -> bool:
    if role is Role.OWNER:
        return True
    return tenant.status is TenantStatus.FAILED and tenant.created_by == user.user_id


def _check_slug(slug: str) -> None:
    try:
        validate_slug(slug)
    except InvalidSlugError as exc:
        raise ServiceError(
            ErrorCode.VALIDATION_ERROR,
            f"slug: {exc}",
            {"errors": [{"loc": ["slug"], "msg": str(exc), "type": "value_error"}]},
        ) from None


def _input(tenant: Tenant) -> TenantInput:
    return TenantInput(
        tenant_id=tenant.id, slug=tenant.slug, name=tenant.name, created_by=tenant.created_by
    )


# -- operations ----------------------------------------------------------------------------------
async def create(deps: Deps, ctx: RequestContext, request: CreateTenant) -> TenantInfo:
    user = await ctx.user()
    _check_slug(request.slug)
    creator = uuid.UUID(user.user_id)
    earlier: Tenant | None = None
    async with deps.db.session() as session:
        row = (
            await session.execute(
                insert(tenants)
                .values(
                    id=uuid.uuid4(),
                    slug=request.slug,
                    name=request.name,
                    status=TenantStatus.PROVISIONING.value,
                    created_by=creator,
                )
                .on_conflict_do_nothing(index_elements=["slug"])
                .returning(tenants)
            )
        ).one_or_none()
        if request.idempotency_key is not None:
            earlier = await _claim_key(session, creator, request, row)
        if earlier is None:
            if row is None:
                raise ServiceError(ErrorCode.CONFLICT, f"the slug {request.slug!r} is taken")
            await publish(
                session,
                TenantProvisioningStarted(tenant_id=str(row.id), slug=row.slug, name=row.name),
                tenant_id=str(row.id),
                actor=Actor.user(user.user_id),
                correlation_id=ctx.request_id,
            )
    tenant = earlier or Tenant.from_row(row)
    if tenant.status is TenantStatus.PROVISIONING:  # a repeat too: the first may have crashed
        await _start(deps, tenant, start_provisioning)
    return tenant.info()


async def _claim_key(
    session: AsyncSession, user_id: uuid.UUID, request: CreateTenant, row
) -> Tenant | None:
    """Record the key for the tenant just inserted (`row`); or, when the key was used before,
    the tenant it gave (a repeat), or `conflict` when it came with another body."""
    fingerprint = request_fingerprint(request)
    if row is not None:
        claimed = (
            await session.execute(
                insert(idempotency_keys)
                .values(
                    user_id=user_id,
                    key=request.idempotency_key,
                    request_hash=fingerprint,
                    tenant_id=row.id,
                )
                .on_conflict_do_nothing()
                .returning(idempotency_keys.c.tenant_id)
            )
        ).scalar_one_or_none()
        if claimed is not None:
            return None
    earlier = (
        await session.execute(
            sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.tenant_id).where(
                idempotency_keys.c.user_id == user_id,
                idempotency_keys.c.key == request.idempotency_key,
            )
        )
    ).one_or_none()
    if earlier is None:
        return None  # the slug is taken by another request: the caller says so
    if earlier.request_hash != fingerprint or row is not None:
        # `row is not None`: this body made a new tenant, so it is not the earlier request.
        raise ServiceError(
            ErrorCode.CONFLICT,
            "this Idempotency-Key was used with another request; use a new key for a new tenant",
        )
    found = await records.by_id(session, earlier.tenant_id)
    return Tenant.from_row(found)


async def list_mine(deps: Deps, ctx: RequestContext) -> Tenants:
    """The tenants I am a member of (identity knows), and those I created that are not ready."""
    user = await ctx.user()
    mine = await deps.client.request(
        "identity", "users.tenants", Empty(), MyTenants, token=ctx.token, request_id=ctx.request_id
    )
    roles = {m.tenant_id: m.role for m in mine.items}
    ids = [uuid.UUID(t) for t in roles]
    async with deps.db.session() as session:
        rows = await session.execute(
            sa.select(tenants)
            .where(
                sa.or_(
                    sa.and_(tenants.c.id.in_(ids), tenants.c.status != TenantStatus.DELETED.value),
                    sa.and_(
                        tenants.c.created_by == uuid.UUID(user.user_id),
                        tenants.c.status.in_([s.value for s in UNFINISHED]),
                    ),
                )
            )
            .order_by(tenants.c.created_at, tenants.c.id)
        )
        found = [Tenant.from_row(r) for r in rows]
    return Tenants(items=[t.info(roles.get(t.id)) for t in found])


async def get(deps: Deps, ctx: RequestContext, slug: str) -> TenantInfo:
    user = await ctx.user()
    tenant, role = await _visible(deps, user, slug)
    return tenant.info(role)


async def retry(deps: Deps, ctx: RequestContext, slug: str) -> TenantInfo:
    """A failed tenant provisions again, from the start."""
    user = await ctx.user()
    tenant, role = await _visible(deps, user, slug)
    if not may_retry(tenant, user, role):
        raise ServiceError(ErrorCode.FORBIDDEN, "only its creator or an owner retries a tenant")
    async with deps.db.session() as session:
        moved = await records.move(
            session,
            tenant.id,
            TenantStatus.PROVISIONING,
            only_from=frozenset({TenantStatus.FAILED}),
            failure_reason=None,
        )
        if moved is None:  # it already was provisioning: a retry in flight
            raise ServiceError(ErrorCode.CONFLICT, "the tenant is already being provisioned")
        tenant = Tenant.from_row(moved)
        await publish(
            session,
            TenantProvisioningStarted(tenant_id=tenant.id, slug=tenant.slug, name=tenant.name),
            tenant_id=tenant.id,
            actor=Actor.user(user.user_id),
            correlation_id=ctx.request_id,
        )
    deps.directory.forget(slug)
    await _start(deps, tenant, start_provisioning)
    return tenant.info(role)


async def delete(deps: Deps, ctx: RequestContext, slug: str) -> TenantInfo:
    """The tenant becomes `deleting`; its workflow backs the schema up, drops it, and marks it
    deleted."""
    user = await ctx.user()
    tenant, role = await _visible(deps, user, slug)
    if not may_delete(tenant, user, role):
        raise ServiceError(ErrorCode.FORBIDDEN, "only an owner deletes a tenant")
    async with deps.db.session() as session:
        moved = await records.move(session, tenant.id, TenantStatus.DELETING)
    deps.directory.forget(slug)
    tenant = Tenant.from_row(moved) if moved is not None else tenant
    await _start(deps, tenant, start_deletion)
    return tenant.info(role)


async def resolve(deps: Deps, slug: str) -> TenantInfo:
    """Which tenant a slug names (the gateway's member routes); a deleted one is not found."""
    tenant = await deps.directory.find(slug)
    if tenant is None or tenant.status is TenantStatus.DELETED:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
    return tenant.info()


async def _visible(deps: Deps, user: Claims, slug: str) -> tuple[Tenant, Role | None]:
    """The tenant and the caller's role in it, read fresh (not cached): these operations act on
    its status. `not_found` unless the caller may see it."""
    tenant = await deps.directory.read(slug) if valid_slug(slug) else None
    if tenant is None or tenant.status is TenantStatus.DELETED:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
    role = await deps.memberships.role(tenant.id, user.user_id)
    if not may_see(tenant, user, role):
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
    return tenant, role


async def _start(deps: Deps, tenant: Tenant, start) -> None:
    """In the background: the tenant is committed, the caller need not wait for Temporal."""
    deps.starts.soon(start, _input(tenant))
