"""`saas tenancy` runs the tenancy service; `saas tenancy worker` runs its Temporal worker."""

from __future__ import annotations

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

# Tenancy verifies callers' tokens (the JWKS), asks identity for roles and for a caller's
# tenants; its worker only makes a tenant's creator its owner. The worker's events go out through
# the service's outbox relay, so only the service publishes.
TENANCY = ProcessSpec(
    "tenancy",
    "saas.tenancy.main:build",
    8002,
    "TENANCY_OPS_URL",
    "TENANCY_OPS_PORT",
    order=10,
    database_login=db_roles.TENANCY.name,
    bus=BusAccess(
        "tenancy",
        events_of="tenancy",
        calls=("svc.identity.jwks", "svc.identity.internal.>", "svc.identity.users.tenants"),
    ),
)
WORKER = ProcessSpec(
    "tenancy-worker",
    "saas.tenancy.worker:build",
    8004,
    "TENANCY_WORKER_OPS_URL",
    "TENANCY_WORKER_OPS_PORT",
    order=20,
    database_login=db_roles.TENANCY.name,  # it creates, migrates and drops tenant schemas
    bus=BusAccess("tenancy-worker", calls=("svc.identity.internal.add_owner",)),
)
PROCESSES = [TENANCY, WORKER]

command = service_group(TENANCY, "Run the tenancy service, or one of its subcommands.")


@command.command()
def worker() -> None:
    """Run the Temporal worker for tenant provisioning and deletion."""
    WORKER.run()
