"""`saas gateway`: run the public HTTP gateway."""

from __future__ import annotations

from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

GATEWAY = ProcessSpec(
    "gateway",
    "saas.gateway.main:build",
    8000,
    "GATEWAY_OPS_URL",
    "GATEWAY_PORT",
    order=90,
    # It may ask any service anything meant for clients, nothing internal, and publish nothing.
    bus=BusAccess("gateway", calls=("svc.>",), denies=("svc.*.internal.>",)),
)
PROCESSES = [GATEWAY]

command = service_group(
    GATEWAY, "Run the gateway: the public API with /health, /health/ready and /metrics."
)
