"""The NATS headers a request carries besides its body.

There is no header that says who the caller is: a service learns that only from the access
token the gateway forwards (`Authorization`), which it verifies itself. Any bus client could
write any other header, so no other header is believed for anything that matters.
"""

from __future__ import annotations

HEADER_REQUEST_ID = "X-Request-Id"
# The caller's access token, forwarded as the gateway received it: services verify it themselves.
HEADER_AUTHORIZATION = "Authorization"
# The client's address as the gateway determined it (for per-address limits and the audit trail).
HEADER_CLIENT_IP = "Saas-Client-Ip"
