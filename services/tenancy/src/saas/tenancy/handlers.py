"""Tenancy's bus operations (`svc.tenancy.*`)."""

from __future__ import annotations

import sqlalchemy as sa

from saas.common.bus import RequestContext, Responder
from saas.common.contracts.tenancy import ResolveTenant, TenantInfo, TenantStatus
from saas.common.db import Database
from saas.common.errors import ErrorCode, ServiceError

tenants = sa.table(
    "tenants",
    sa.column("id"),
    sa.column("slug"),
    sa.column("name"),
    sa.column("status"),
    sa.column("created_at"),
    schema="public",
)


def register(responder: Responder, db: Database) -> None:
    @responder.operation("resolve", ResolveTenant)
    async def resolve(request: ResolveTenant, _: RequestContext) -> TenantInfo:
        """Which tenant a slug names (the gateway's routes take slugs, the services ids). A
        deleted tenant is not found."""
        async with db.session() as session:
            row = (
                await session.execute(
                    sa.select(tenants).where(
                        tenants.c.slug == request.slug,
                        tenants.c.status != TenantStatus.DELETED.value,
                    )
                )
            ).one_or_none()
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such tenant")
        return TenantInfo(
            id=str(row.id),
            slug=row.slug,
            name=row.name,
            status=TenantStatus(row.status),
            created_at=row.created_at,
        )
