"""The audit log: `/api/v1/tenants/{slug}/audit-events` (and `/verify`) for a tenant's owners and
admins, `/api/v1/audit-events` (and `/verify`) for platform admins: the events of no tenant
(sign-ups, logins, password resets).

The audit service decides who may read, from the token the gateway forwards: a member who is not
an owner or admin gets 403, a non-member 404 (as for a tenant that does not exist), anyone but a
platform admin 403 on the events of no tenant.

Verification is paged by the audit service (each page is a short transaction). The gateway
follows the pages for up to half of `REQUEST_TIMEOUT`; a chain too long for that comes back
with `complete: false` and a `next_cursor` to ask again with (`?cursor=`), the count so far kept.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from saas.common.contracts.audit import (
    MAX_PAGE_SIZE,
    AuditPage,
    AuditQuery,
    AuditVerification,
    AuditVerifyRequest,
)
from saas.gateway.dependencies import Audit, SettingsDep, Tenant
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["audit"])
NO_TENANT = ""

Types = Annotated[
    list[str] | None,
    Query(
        alias="type",
        max_length=50,
        description="event types to include (repeat for several); all when absent",
    ),
]
Actor = Annotated[str | None, Query(max_length=200, description="the acting user's id")]
Since = Annotated[datetime | None, Query(description="events at or after this time")]
Until = Annotated[datetime | None, Query(description="events at or before this time")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page")
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="events per page")]
VerifyCursor = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` of an incomplete verification")
]


async def _query(
    audit: Audit,
    tenant_id: str,
    types: list[str] | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> AuditPage:
    try:
        query = AuditQuery(
            tenant_id=tenant_id,
            types=types or [],
            actor_id=actor,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
    except ValidationError as exc:  # e.g. `since` after `until`: the client's mistake, a 422
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
    return await audit("query", query, AuditPage)


async def _verify(
    audit: Audit, tenant_id: str, cursor: str | None, budget: float
) -> AuditVerification:
    deadline = time.monotonic() + budget
    while True:
        result = await audit(
            "verify", AuditVerifyRequest(tenant_id=tenant_id, cursor=cursor), AuditVerification
        )
        if result.complete or time.monotonic() >= deadline:
            return result
        cursor = result.next_cursor


@router.get(
    "/tenants/{slug}/audit-events",
    response_model=AuditPage,
    responses=problems(401, 403, 404, 422, *UPSTREAM),
)
async def tenant_audit_events(
    tenant: Tenant,
    audit: Audit,
    types: Types = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    """The tenant's audit log, newest first, filtered by type, actor and time; owners and
    admins only."""
    return await _query(audit, tenant.id, types, actor, since, until, cursor, limit)


@router.get(
    "/tenants/{slug}/audit-events/verify",
    response_model=AuditVerification,
    responses=problems(401, 403, 404, 422, *UPSTREAM),
)
async def verify_tenant_audit_events(
    tenant: Tenant, audit: Audit, settings: SettingsDep, cursor: VerifyCursor = None
) -> AuditVerification:
    """Check the tenant's hash chain against the stored bytes and every checkpoint; names the
    first broken link, a cut tail or a deleted chain. Owners and admins only."""
    return await _verify(audit, tenant.id, cursor, settings.request_timeout / 2)


@router.get(
    "/audit-events",
    response_model=AuditPage,
    responses=problems(401, 403, 422, *UPSTREAM),
)
async def platform_audit_events(
    audit: Audit,
    types: Types = None,
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> AuditPage:
    """The events of no tenant (sign-ups, logins, password resets), newest first; platform
    admins only."""
    return await _query(audit, NO_TENANT, types, actor, since, until, cursor, limit)


@router.get(
    "/audit-events/verify",
    response_model=AuditVerification,
    responses=problems(401, 403, 422, *UPSTREAM),
)
async def verify_platform_audit_events(
    audit: Audit, settings: SettingsDep, cursor: VerifyCursor = None
) -> AuditVerification:
    """Check the chain of the events of no tenant; platform admins only."""
    return await _verify(audit, NO_TENANT, cursor, settings.request_timeout / 2)
