"""Which tenant a slug names, and whether the caller may act on it: the check every
tenant-scoped operation makes before it touches the tenant's data.

`TenantDirectory` keeps what it read about a slug for `TENANT_CACHE_SECONDS` (a busy tenant
costs the database one lookup per replica per period; a status change reaches the other
replicas within it). Only tenants found are kept: a tenant created a moment ago is never "not
found" because of the cache.

`TenantAccess.require` is the order every check happens in: the caller's token, the tenant, the
caller's role in it (identity, cached by `Memberships`), then the tenant's status and the role
the operation needs. Whoever is not a member is told the tenant does not exist, as for a slug
that names none, and for a slug that is not even valid (so it never reaches SQL).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from saas.common.bus import RequestContext
from saas.common.contracts.identity import Role
from saas.common.contracts.tenancy import TenantInfo, TenantStatus
from saas.common.db import Database
from saas.common.errors import ErrorCode, ServiceError
from saas.common.memberships import MEMBERS, Memberships
from saas.common.tenant_names import InvalidSlugError, validate_slug
from saas.common.tokens import Claims
from saas.tenancy.store import records
from saas.tenancy.store.records import NO_SUCH_TENANT


@dataclass(frozen=True)
class Tenant:
    id: str
    slug: str
    name: str
    status: TenantStatus
    created_at: datetime
    status_changed_at: datetime | None
    created_by: str | None
    failure_reason: str | None

    @classmethod
    def from_row(cls, row) -> Tenant:
        return cls(
            id=str(row.id),
            slug=row.slug,
            name=row.name,
            status=TenantStatus(row.status),
            created_at=row.created_at,
            status_changed_at=row.status_changed_at,
            created_by=str(row.created_by) if row.created_by else None,
            failure_reason=row.failure_reason,
        )

    def info(self, role: Role | None = None) -> TenantInfo:
        return TenantInfo(
            id=self.id,
            slug=self.slug,
            name=self.name,
            status=self.status,
            created_at=self.created_at,
            status_changed_at=self.status_changed_at,
            failure_reason=self.failure_reason,
            role=role,
        )


def valid_slug(slug: str) -> bool:
    try:
        validate_slug(slug)
    except InvalidSlugError:
        return False
    return True


class TenantDirectory:
    def __init__(self, db: Database, *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.db = db
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Tenant]] = {}

    async def find(self, slug: str) -> Tenant | None:
        """The tenant a slug names (deleted ones too: callers decide); None for no tenant, and
        for a slug that could name none."""
        if not valid_slug(slug):
            return None
        hit = self._cache.get(slug)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        tenant = await self.read(slug)
        if tenant is not None and self.ttl > 0:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # crude, bounded; a miss costs one query
            self._cache[slug] = (time.monotonic(), tenant)
        return tenant

    async def read(self, slug: str) -> Tenant | None:
        """From the database, bypassing the cache."""
        async with self.db.session() as session:
            row = await records.by_slug(session, slug)
        return Tenant.from_row(row) if row is not None else None

    def forget(self, slug: str) -> None:
        self._cache.pop(slug, None)


@dataclass(frozen=True)
class Access:
    user: Claims
    tenant: Tenant
    role: Role


class TenantAccess:
    def __init__(self, directory: TenantDirectory, memberships: Memberships) -> None:
        self.directory = directory
        self.memberships = memberships

    async def require(
        self, ctx: RequestContext, slug: str, roles: Iterable[Role] = MEMBERS
    ) -> Access:
        """The caller, the tenant and the caller's role, if they may act on its data with one of
        `roles`; otherwise `not_found`, `forbidden` or `conflict`, in that order of checks."""
        user = await ctx.user()
        tenant = await self.directory.find(slug)
        if tenant is None or tenant.status in (TenantStatus.DELETING, TenantStatus.DELETED):
            raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
        role = await self.memberships.role(tenant.id, user.user_id)
        if role is None:
            raise ServiceError(ErrorCode.NOT_FOUND, NO_SUCH_TENANT)
        if tenant.status is TenantStatus.SUSPENDED:
            raise ServiceError(ErrorCode.FORBIDDEN, "the tenant is suspended")
        if tenant.status is not TenantStatus.READY:
            raise ServiceError(
                ErrorCode.CONFLICT,
                f"the tenant is {tenant.status.value}, not ready for use",
                {"status": tenant.status.value},
            )
        allowed = set(roles)
        if role not in allowed:
            needed = " or ".join(sorted(r.value for r in allowed))
            raise ServiceError(ErrorCode.FORBIDDEN, f"this needs the {needed} role")
        return Access(user, tenant, role)
