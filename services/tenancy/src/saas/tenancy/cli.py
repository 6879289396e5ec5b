"""`saas tenancy` runs the tenancy service; `saas tenancy worker` runs its Temporal worker."""

from __future__ import annotations

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

# Tenancy publishes its events and asks identity for memberships; its worker only asks identity
# (the events it writes go out through tenancy's outbox relay).
CALLS_IDENTITY = ("svc.identity.jwks", "svc.identity.internal.>")
TENANCY = ProcessSpec(
    "tenancy",
    "saas.tenancy.main:build",
    8002,
    "TENANCY_OPS_URL",
    "TENANCY_OPS_PORT",
    order=10,
    database_login=db_roles.TENANCY.name,
    bus=BusAccess("tenancy", events_of="tenancy", calls=CALLS_IDENTITY),
)
WORKER = ProcessSpec(
    "tenancy-worker",
    "saas.tenancy.worker:build",
    8004,
    "TENANCY_WORKER_OPS_URL",
    "TENANCY_WORKER_OPS_PORT",
    order=20,
    database_login=db_roles.TENANCY.name,  # it creates and migrates tenant schemas
    bus=BusAccess("tenancy-worker", calls=CALLS_IDENTITY),
)
PROCESSES = [TENANCY, WORKER]

command = service_group(TENANCY, "Run the tenancy service, or one of its subcommands.")


@command.command()
def worker() -> None:
    """Run the Temporal worker for tenant provisioning and deletion."""
    WORKER.run()
