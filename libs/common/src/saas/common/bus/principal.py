"""Who is asking: the principal the gateway verified, carried in NATS headers."""

from __future__ import annotations

from pydantic import BaseModel

HEADER_REQUEST_ID = "X-Request-Id"
# The caller's access token, forwarded as the gateway received it: services verify it themselves.
HEADER_AUTHORIZATION = "Authorization"
# The client's address as the gateway determined it (for per-address limits and the audit trail).
HEADER_CLIENT_IP = "Saas-Client-Ip"
HEADER_USER_ID = "X-Principal-User-Id"
HEADER_TENANT_ID = "X-Principal-Tenant-Id"
HEADER_ROLE = "X-Principal-Role"


class Principal(BaseModel):
    user_id: str
    tenant_id: str | None = None
    role: str | None = None

    def to_headers(self) -> dict[str, str]:
        headers = {HEADER_USER_ID: self.user_id}
        if self.tenant_id:
            headers[HEADER_TENANT_ID] = self.tenant_id
        if self.role:
            headers[HEADER_ROLE] = self.role
        return headers

    @classmethod
    def from_headers(cls, headers: dict[str, str] | None) -> Principal | None:
        if not headers or not headers.get(HEADER_USER_ID):
            return None
        return cls(
            user_id=headers[HEADER_USER_ID],
            tenant_id=headers.get(HEADER_TENANT_ID) or None,
            role=headers.get(HEADER_ROLE) or None,
        )
