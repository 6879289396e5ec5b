"""Reading tenants and changing their status: the queries the service, the worker and the
commands share. A status changes only by a conditional UPDATE (see `saas.tenancy.lifecycle`)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.contracts.tenancy import TenantStatus
from saas.common.errors import ErrorCode, ServiceError
from saas.tenancy import lifecycle
from saas.tenancy.store.tables import tenants

NO_SUCH_TENANT = "no such tenant"


async def by_slug(session: AsyncSession, slug: str) -> Row | None:
    return (await session.execute(sa.select(tenants).where(tenants.c.slug == slug))).one_or_none()


async def by_id(session: AsyncSession, tenant_id: uuid.UUID | str) -> Row | None:
    return (
        await session.execute(sa.select(tenants).where(tenants.c.id == uuid.UUID(str(tenant_id))))
    ).one_or_none()


async def move(
    session: AsyncSession,
    tenant_id: uuid.UUID | str,
    to: TenantStatus,
    *,
    only_from: frozenset[TenantStatus] | None = None,
    **values: Any,
) -> Row | None:
    """Change a tenant's status to `to` if it is in a status it may come from (`only_from`
    narrows them). Returns the changed row; None when it already was `to` (nothing changed, so
    a retried step does its work once). Raises `conflict` for an illegal move, `not_found`."""
    allowed = lifecycle.sources(to) & (only_from or lifecycle.sources(to))
    moved = (
        await session.execute(
            sa.update(tenants)
            .where(
                tenants.c.id == uuid.UUID(str(tenant_id)),
                tenants.c.status.in_([s.value for s in allowed]),
            )
            .values(
                status=to.value, status_changed_at=sa.func.now(), updated_at=sa.func.now(), **values
            )
            .returning(tenants)
        )
    ).one_or_none()
    if moved is not None:
        return moved
    current = await by_id(session, tenant_id)
    if current is None:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
    status = TenantStatus(current.status)
    if status is to:
        return None
    lifecycle.check_transition(status, to)
    raise ServiceError(
        ErrorCode.CONFLICT,
        f"the tenant is {status.value}; this needs it "
        + " or ".join(sorted(s.value for s in allowed)),
        {"status": status.value},
    )
