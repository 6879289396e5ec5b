"""Who may act on a tenant: the caller proven by their token, with the role identity gives them.

Identity owns memberships. A service that serves tenant-scoped requests asks it
(`svc.identity.internal.role`) and keeps each answer for a few seconds, so a busy tenant costs
identity one question per user every `ttl` seconds, and a removed member loses access within
`ttl` seconds at most. Nothing the caller sends is believed: the user comes from the access token
(`RequestContext.user()`), the role from identity.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from saas.common.bus.requests import BusClient, RequestContext
from saas.common.contracts.identity import Membership, MembershipQuery, Role
from saas.common.errors import ErrorCode, ServiceError
from saas.common.tokens import Claims

MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
MEMBERS = frozenset(Role)


class Memberships:
    def __init__(self, client: BusClient, *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self.client = client
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[tuple[str, str], tuple[float, Role | None]] = {}

    async def role(self, tenant_id: str, user_id: str) -> Role | None:
        key = (tenant_id, user_id)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        reply = await self.client.request(
            "identity",
            "internal.role",
            MembershipQuery(tenant_id=tenant_id, user_id=user_id),
            Membership,
        )
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # crude, bounded; a miss costs one question
        self._cache[key] = (time.monotonic(), reply.role)
        return reply.role

    def forget(self, tenant_id: str, user_id: str) -> None:
        self._cache.pop((tenant_id, user_id), None)

    async def require(
        self, ctx: RequestContext, tenant_id: str, roles: Iterable[Role] = MEMBERS
    ) -> tuple[Claims, Role]:
        """The caller and their role, if it is one of `roles`; otherwise `not_found` for a
        non-member (whether a tenant exists is nobody else's business) and `forbidden` for a
        member whose role is not enough."""
        user = await ctx.user()
        role = await self.role(tenant_id, user.user_id)
        if role is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "no such tenant")
        if role not in set(roles):
            needed = " or ".join(sorted(r.value for r in roles))
            raise ServiceError(ErrorCode.FORBIDDEN, f"this needs the {needed} role")
        return user, role
