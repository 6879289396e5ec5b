"""`saas identity`: run the identity service."""

from __future__ import annotations

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

IDENTITY = ProcessSpec(
    "identity",
    "saas.identity.main:build",
    8001,
    "IDENTITY_OPS_URL",
    "IDENTITY_OPS_PORT",
    order=10,
    database_login=db_roles.IDENTITY.name,
    bus=BusAccess("identity", events_of="identity", consumes=("identity-mail", "identity-tenants")),
)
PROCESSES = [IDENTITY]

command = service_group(
    IDENTITY, "Run the identity service (NATS responders plus /health, /health/ready, /metrics)."
)
