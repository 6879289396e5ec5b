"""Projects: the example of product data living in each tenant's own schema. Copy this pattern.

1. Who: `deps.access.require` checks the caller's token, finds the tenant by its slug (cached),
   and asks identity for the caller's role (cached), before anything of the tenant is read.
2. What they may do: the rules below, pure and unit-tested. Members read and create; a
   project's creator, admins and owners change it; admins and owners delete it.
3. The data: only through `db.get_tenant_session(slug)`, one transaction whose search path is
   the tenant's schema alone (tables are unqualified, nothing else is reachable by name). Reads
   take it `read_only`: a READ ONLY transaction whose statements skip SQLAlchemy's session.
4. Events: in that same transaction, through tenancy's outbox (`project.created`, ...).

Pages are newest first, by `(created_at, id)` (an index covers it), with an opaque cursor.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.bus import RequestContext
from saas.common.contracts.identity import Done, Role
from saas.common.contracts.tenancy import (
    CreateProject,
    ListProjects,
    Project,
    ProjectRef,
    Projects,
    UpdateProject,
)
from saas.common.db import TenantReader
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import Actor
from saas.common.events.catalogue import ProjectCreated, ProjectDeleted, ProjectUpdated
from saas.common.events.faults import sqlstate
from saas.common.memberships import MANAGERS, MEMBERS
from saas.tenancy.deps import Deps
from saas.tenancy.directory import Access
from saas.tenancy.events import publish
from saas.tenancy.store.records import NO_SUCH_TENANT
from saas.tenancy.store.tables import projects

NO_SUCH_PROJECT = "no such project"
R = TypeVar("R")
UNDEFINED_TABLE = "42P01"
COLUMNS = (
    projects.c.id,
    projects.c.name,
    projects.c.description,
    projects.c.created_by,
    projects.c.created_at,
    projects.c.updated_at,
)

# The reads, built once with bound parameters: SQLAlchemy keeps a statement's cache key on the
# statement, and building a new one per call cost more Python than running it.
_NEWEST_FIRST = (projects.c.created_at.desc(), projects.c.id.desc())
PAGE = sa.select(*COLUMNS).order_by(*_NEWEST_FIRST).limit(sa.bindparam("limit"))
PAGE_BEFORE = PAGE.where(
    sa.tuple_(projects.c.created_at, projects.c.id)
    < sa.tuple_(
        sa.bindparam("created_at", type_=projects.c.created_at.type),
        sa.bindparam("id", type_=projects.c.id.type),
    )
)
ONE = sa.select(*COLUMNS).where(projects.c.id == sa.bindparam("id"))
ONE_LOCKED = ONE.with_for_update()


# -- rules (pure) --------------------------------------------------------------------------------
def may_update(role: Role, user_id: str, created_by: str) -> bool:
    return role in MANAGERS or user_id == created_by


def may_delete(role: Role) -> bool:
    return role in MANAGERS


def encode_cursor(created_at: datetime, project_id: uuid.UUID) -> str:
    raw = orjson.dumps({"t": created_at.isoformat(), "i": str(project_id)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(doc["t"]), uuid.UUID(doc["i"])
    except Exception:
        raise ServiceError(
            ErrorCode.VALIDATION_ERROR,
            "cursor: not a cursor this service issued (pass next_cursor from the previous page)",
        ) from None


def project_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_PROJECT) from None


def as_project(row: Mapping[str, Any]) -> Project:
    """A project from a row of COLUMNS: a reader's record, or a session's row `._mapping`."""
    return Project(
        id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        created_by=str(row["created_by"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# -- the tenant's data ---------------------------------------------------------------------------
@asynccontextmanager
async def tenant_data(deps: Deps, access: Access) -> AsyncIterator[AsyncSession]:
    """The tenant's session, to change its data."""
    async with _schema_still_there(deps, access):
        async with deps.db.get_tenant_session(access.tenant.slug) as session:
            yield session


@asynccontextmanager
async def tenant_reads(deps: Deps, access: Access) -> AsyncIterator[TenantReader]:
    """The tenant's data, read only."""
    async with _schema_still_there(deps, access):
        async with deps.db.get_tenant_session(access.tenant.slug, read_only=True) as reader:
            yield reader


@asynccontextmanager
async def _schema_still_there(deps: Deps, access: Access) -> AsyncIterator[None]:
    """A schema dropped since the tenant was looked up (it was being deleted) is `not_found`,
    not an internal error."""
    try:
        yield
    except DBAPIError as exc:
        if sqlstate(exc) != UNDEFINED_TABLE:
            raise
        deps.directory.forget(access.tenant.slug)
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT) from None


async def _one(session: AsyncSession, pid: uuid.UUID, *, lock: bool = False):
    return _found((await session.execute(ONE_LOCKED if lock else ONE, {"id": pid})).one_or_none())


def _found(row: R | None) -> R:
    if row is None:
        raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_PROJECT)
    return row


def _actor(access: Access) -> Actor:
    return Actor.user(access.user.user_id)


# -- operations ----------------------------------------------------------------------------------
async def list_projects(deps: Deps, ctx: RequestContext, request: ListProjects) -> Projects:
    access = await deps.access.require(ctx, request.slug, MEMBERS)
    query, values = PAGE, {"limit": request.limit + 1}
    if request.cursor:
        query = PAGE_BEFORE
        values["created_at"], values["id"] = decode_cursor(request.cursor)
    async with tenant_reads(deps, access) as reader:
        rows = await reader.all(query, values)
    page = rows[: request.limit]
    more = len(rows) > request.limit
    return Projects(
        items=[as_project(r) for r in page],
        next_cursor=encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None,
    )


async def create_project(deps: Deps, ctx: RequestContext, request: CreateProject) -> Project:
    access = await deps.access.require(ctx, request.slug, MEMBERS)
    async with tenant_data(deps, access) as session:
        row = (
            await session.execute(
                sa.insert(projects)
                .values(
                    id=uuid.uuid4(),
                    name=request.name,
                    description=request.description,
                    created_by=uuid.UUID(access.user.user_id),
                )
                .returning(*COLUMNS)
            )
        ).one()
        created = ProjectCreated(tenant_id=access.tenant.id, project_id=str(row.id), name=row.name)
        await publish(
            session,
            created,
            tenant_id=access.tenant.id,
            actor=_actor(access),
            correlation_id=ctx.request_id,
            subject=str(row.id),
        )
    return as_project(row._mapping)


async def get_project(deps: Deps, ctx: RequestContext, request: ProjectRef) -> Project:
    access = await deps.access.require(ctx, request.slug, MEMBERS)
    pid = project_id(request.project_id)
    async with tenant_reads(deps, access) as reader:
        return as_project(_found(await reader.one_or_none(ONE, {"id": pid})))


async def update_project(deps: Deps, ctx: RequestContext, request: UpdateProject) -> Project:
    access = await deps.access.require(ctx, request.slug, MEMBERS)
    pid = project_id(request.project_id)
    changes = {
        f: getattr(request, f) for f in ("name", "description") if f in request.model_fields_set
    }
    async with tenant_data(deps, access) as session:
        current = await _one(session, pid, lock=True)
        if not may_update(access.role, access.user.user_id, str(current.created_by)):
            raise ServiceError(
                ErrorCode.FORBIDDEN,
                "changing a project needs the owner or admin role, or to have created it",
            )
        changed = sorted(f for f, v in changes.items() if getattr(current, f) != v)
        if not changed:
            return as_project(current._mapping)
        row = (
            await session.execute(
                sa.update(projects)
                .where(projects.c.id == pid)
                .values(**{f: changes[f] for f in changed}, updated_at=sa.func.now())
                .returning(*COLUMNS)
            )
        ).one()
        updated = ProjectUpdated(
            tenant_id=access.tenant.id, project_id=str(pid), name=row.name, changed=changed
        )
        await publish(
            session,
            updated,
            tenant_id=access.tenant.id,
            actor=_actor(access),
            correlation_id=ctx.request_id,
            subject=str(pid),
        )
    return as_project(row._mapping)


async def delete_project(deps: Deps, ctx: RequestContext, request: ProjectRef) -> Done:
    access = await deps.access.require(ctx, request.slug, MEMBERS)
    pid = project_id(request.project_id)
    async with tenant_data(deps, access) as session:
        await _one(session, pid)  # a member learns "not found" before "forbidden", as for reads
        if not may_delete(access.role):
            raise ServiceError(
                ErrorCode.FORBIDDEN, "deleting a project needs the owner or admin role"
            )
        await session.execute(sa.delete(projects).where(projects.c.id == pid))
        await publish(
            session,
            ProjectDeleted(tenant_id=access.tenant.id, project_id=str(pid)),
            tenant_id=access.tenant.id,
            actor=_actor(access),
            correlation_id=ctx.request_id,
            subject=str(pid),
        )
    return Done()
