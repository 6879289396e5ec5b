"""Tenants: `/api/v1/tenants*`. Create one (202: it is provisioned in the background; send an
`Idempotency-Key` to make retries safe), list mine, look at one, retry a failed one, delete one.

Each route is one request to tenancy, which verifies the caller's token again and decides what
they may see and do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path

from saas.common.bus.requests import Empty
from saas.common.contracts.tenancy import (
    IDEMPOTENCY_KEY_MAX,
    CreateTenant,
    NewTenant,
    TenantInfo,
    TenantRef,
    Tenants,
)
from saas.gateway.dependencies import Tenancy
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["tenants"])
Slug = Annotated[str, Path(min_length=1, max_length=100)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[\x21-\x7e]+$",
        description="repeat a create safely: the same key and body give the same tenant",
    ),
]


@router.post(
    "/tenants",
    status_code=202,
    response_model=TenantInfo,
    responses=problems(401, 409, 413, 422, *UPSTREAM),
)
async def create_tenant(
    body: NewTenant, tenancy: Tenancy, idempotency_key: IdempotencyKey = None
) -> TenantInfo:
    """Create a tenant: 202 with status `provisioning`; it becomes `ready` (or `failed`, with the
    reason) within moments, and you its owner. `tenant.created` is published when it is ready."""
    request = CreateTenant(slug=body.slug, name=body.name, idempotency_key=idempotency_key)
    return await tenancy("tenants.create", request, TenantInfo)


@router.get(
    "/tenants",
    response_model=Tenants,
    responses=problems(401, *UPSTREAM),
)
async def my_tenants(tenancy: Tenancy) -> Tenants:
    """The tenants you are a member of, with your role, and those you created that are still
    provisioning or failed."""
    return await tenancy("tenants.list", Empty(), Tenants)


@router.get(
    "/tenants/{slug}",
    response_model=TenantInfo,
    responses=problems(401, 404, 422, *UPSTREAM),
)
async def get_tenant(slug: Slug, tenancy: Tenancy) -> TenantInfo:
    """One tenant and its status (members; its creator while it is not ready)."""
    return await tenancy("tenants.get", TenantRef(slug=slug), TenantInfo)


@router.post(
    "/tenants/{slug}/retry",
    status_code=202,
    response_model=TenantInfo,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def retry_tenant(slug: Slug, tenancy: Tenancy) -> TenantInfo:
    """Provision a failed tenant again (its creator or an owner); 409 unless it failed."""
    return await tenancy("tenants.retry", TenantRef(slug=slug), TenantInfo)


@router.delete(
    "/tenants/{slug}",
    status_code=202,
    response_model=TenantInfo,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def delete_tenant(slug: Slug, tenancy: Tenancy) -> TenantInfo:
    """Delete a tenant (owners): 202 with status `deleting`; its schema is backed up, then
    dropped, and `tenant.deleted` published. Its slug is not given out again."""
    return await tenancy("tenants.delete", TenantRef(slug=slug), TenantInfo)
