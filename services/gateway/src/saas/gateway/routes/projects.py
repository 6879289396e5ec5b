"""Projects, the example of data inside a tenant: `/api/v1/tenants/{slug}/projects*`.

One request to tenancy per route, which takes the slug itself (no separate lookup): it checks
the caller's role in the tenant before any of the tenant's data is read. Members list, read and
create; a project's creator, admins and owners change it; admins and owners delete it. The
reads pass tenancy's reply on as it wrote it (`Upstream.relay`): it is the contract model's JSON
already.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from saas.common.contracts.identity import Done
from saas.common.contracts.tenancy import (
    PAGE_MAX,
    CreateProject,
    ListProjects,
    NewProject,
    Project,
    ProjectChanges,
    ProjectRef,
    Projects,
    UpdateProject,
)
from saas.gateway.dependencies import Tenancy
from saas.gateway.problems import UPSTREAM, problems
from saas.gateway.routes import API_PREFIX

router = APIRouter(prefix=f"{API_PREFIX}/tenants/{{slug}}/projects", tags=["projects"])
Slug = Annotated[str, Path(min_length=1, max_length=100)]
ProjectId = Annotated[str, Path(min_length=1, max_length=100)]


@router.get(
    "",
    response_model=Projects,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def list_projects(
    slug: Slug,
    tenancy: Tenancy,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_MAX)] = 20,
) -> Response:
    """The tenant's projects, newest first; pass `next_cursor` as `cursor` for the next page."""
    request = ListProjects(slug=slug, cursor=cursor, limit=limit)
    return await tenancy.relay("projects.list", request, Projects)


@router.post(
    "",
    status_code=201,
    response_model=Project,
    responses=problems(401, 403, 404, 409, 413, 422, *UPSTREAM),
)
async def create_project(slug: Slug, body: NewProject, tenancy: Tenancy) -> Project:
    """Create a project (members)."""
    request = CreateProject(slug=slug, name=body.name, description=body.description)
    return await tenancy("projects.create", request, Project)


@router.get(
    "/{project_id}",
    response_model=Project,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def get_project(slug: Slug, project_id: ProjectId, tenancy: Tenancy) -> Response:
    return await tenancy.relay(
        "projects.get", ProjectRef(slug=slug, project_id=project_id), Project
    )


@router.patch(
    "/{project_id}",
    response_model=Project,
    responses=problems(401, 403, 404, 409, 413, 422, *UPSTREAM),
)
async def update_project(
    slug: Slug, project_id: ProjectId, body: ProjectChanges, tenancy: Tenancy
) -> Project:
    """Change a project's name or description (its creator, admins and owners)."""
    changes = body.model_dump(exclude_unset=True)
    request = UpdateProject(slug=slug, project_id=project_id, **changes)
    return await tenancy("projects.update", request, Project)


@router.delete(
    "/{project_id}",
    status_code=204,
    responses=problems(401, 403, 404, 409, 422, *UPSTREAM),
)
async def delete_project(slug: Slug, project_id: ProjectId, tenancy: Tenancy) -> Response:
    """Delete a project (admins and owners)."""
    await tenancy("projects.delete", ProjectRef(slug=slug, project_id=project_id), Done)
    return Response(status_code=204)
