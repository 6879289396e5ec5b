"""`saas gateway`: run the public HTTP gateway."""

from __future__ import annotations

from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, PublicPort, service_group

GATEWAY = ProcessSpec(
    "gateway",
    "saas.gateway.main:build",
    8005,
    "GATEWAY_OPS_URL",
    "GATEWAY_OPS_PORT",
    order=90,
    # The API faces clients on its own port; /health, /health/ready, /metrics and the detailed
    # status stay on the ops port above.
    public=PublicPort(8000, "GATEWAY_URL", "GATEWAY_PORT"),
    # It may ask any service anything meant for clients, nothing internal, and publish nothing.
    bus=BusAccess("gateway", calls=("svc.>",), denies=("svc.*.internal.>",)),
)
PROCESSES = [GATEWAY]

command = service_group(
    GATEWAY,
    "Run the gateway: the public API, and /health, /health/ready and /metrics on the ops port.",
)
