"""Tenancy's bus operations (`svc.tenancy.*`): each one line of wiring into a use case.

Every operation that acts for a user verifies the forwarded access token itself
(`ctx.user()`, inside the use case); tenant-scoped ones check the caller's role with identity
before they touch the tenant's data (`TenantAccess.require`).
"""

from __future__ import annotations

from saas.common.bus import RequestContext, Responder
from saas.common.bus.requests import Empty
from saas.common.contracts.identity import Done
from saas.common.contracts.tenancy import (
    CreateProject,
    CreateTenant,
    ListProjects,
    Project,
    ProjectRef,
    Projects,
    ResolveTenant,
    TenantInfo,
    TenantRef,
    Tenants,
    UpdateProject,
)
from saas.tenancy import projects, tenants
from saas.tenancy.deps import Deps


def register(responder: Responder, deps: Deps) -> None:
    op = responder.operation

    # -- tenants -----------------------------------------------------------------------------
    @op("resolve", ResolveTenant)
    async def resolve(request: ResolveTenant, _: RequestContext) -> TenantInfo:
        return await tenants.resolve(deps, request.slug)

    @op("tenants.create", CreateTenant)
    async def create(request: CreateTenant, ctx: RequestContext) -> TenantInfo:
        return await tenants.create(deps, ctx, request)

    @op("tenants.list", Empty)
    async def list_mine(_: Empty, ctx: RequestContext) -> Tenants:
        return await tenants.list_mine(deps, ctx)

    @op("tenants.get", TenantRef)
    async def get(request: TenantRef, ctx: RequestContext) -> TenantInfo:
        return await tenants.get(deps, ctx, request.slug)

    @op("tenants.retry", TenantRef)
    async def retry(request: TenantRef, ctx: RequestContext) -> TenantInfo:
        return await tenants.retry(deps, ctx, request.slug)

    @op("tenants.delete", TenantRef)
    async def delete(request: TenantRef, ctx: RequestContext) -> TenantInfo:
        return await tenants.delete(deps, ctx, request.slug)

    # -- projects: data inside the tenant's schema -------------------------------------------
    @op("projects.list", ListProjects)
    async def list_projects(request: ListProjects, ctx: RequestContext) -> Projects:
        return await projects.list_projects(deps, ctx, request)

    @op("projects.create", CreateProject)
    async def create_project(request: CreateProject, ctx: RequestContext) -> Project:
        return await projects.create_project(deps, ctx, request)

    @op("projects.get", ProjectRef)
    async def get_project(request: ProjectRef, ctx: RequestContext) -> Project:
        return await projects.get_project(deps, ctx, request)

    @op("projects.update", UpdateProject)
    async def update_project(request: UpdateProject, ctx: RequestContext) -> Project:
        return await projects.update_project(deps, ctx, request)

    @op("projects.delete", ProjectRef)
    async def delete_project(request: ProjectRef, ctx: RequestContext) -> Done:
        return await projects.delete_project(deps, ctx, request)
