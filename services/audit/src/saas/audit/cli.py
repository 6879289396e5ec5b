"""`saas audit`: run the audit service."""

from __future__ import annotations

import click

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

AUDIT = ProcessSpec(
    "audit",
    "saas.audit.main:build",
    8003,
    "AUDIT_OPS_URL",
    "AUDIT_OPS_PORT",
    order=10,
    database_login=db_roles.AUDIT.name,
    bus=BusAccess(
        "audit",
        calls=("svc.identity.jwks", "svc.identity.internal.role"),
        consumes=("audit",),
        publishes=("audit.checkpoint.>",),
        streams_read=("AUDIT_CHECKPOINTS",),
    ),
)
PROCESSES = [AUDIT]

command = service_group(
    AUDIT, "Run the audit service (NATS responders plus /health, /health/ready, /metrics)."
)


def chain_label(tenant_key: str) -> str:
    return tenant_key or '"" (events without a tenant)'


@command.command()
@click.argument("tenant_ids", nargs=-1)
@click.option("--all", "all_tenants", is_flag=True, help="every chain in the log or checkpointed")
def verify(tenant_ids: tuple[str, ...], all_tenants: bool) -> None:
    """Check tenants' hash chains against their checkpoints; exit 1 if any is broken.

    For operators and scheduled integrity checks. Connects with DATABASE_URL as the audit role
    (use the audit service's login) and reads the checkpoints from NATS_URL. `--all` covers every
    chain in the log, the one of events without a tenant ("") included, and every chain that has
    a checkpoint, so a chain deleted from the database is reported too.
    """
    import asyncio

    if not tenant_ids and not all_tenants:
        raise click.UsageError("name one or more tenant ids, or --all")

    async def run() -> bool:
        from saas.audit import checkpoints, store
        from saas.audit.main import AuditSettings
        from saas.common.bus import Bus
        from saas.common.db import Database

        settings = AuditSettings.load(db_pool_size=1, db_max_overflow=0)
        db = Database.from_settings(settings)
        bus = Bus(settings.nats_url, name="saas-audit-verify")
        intact = True
        try:
            await bus.connect()
            tenants = set(tenant_ids)
            if all_tenants:
                async with db.session() as session:
                    tenants.update(await store.tenant_keys(session))
                tenants.update(await checkpoints.checkpointed_tenants(bus.js))
            for tenant in sorted(tenants):
                known = await checkpoints.read(bus.js, tenant)
                result = await store.verify_in_pages(db, tenant, checkpoints=known)
                label = chain_label(tenant)
                if result.ok:
                    click.echo(
                        f"{label}: intact, {result.checked} entries, "
                        f"{result.checkpoints} checkpoints"
                    )
                    continue
                intact = False
                broken = result.first_broken
                assert broken is not None
                where = f" (event {broken.event_id})" if broken.event_id else ""
                click.echo(
                    f"{label}: BROKEN at entry {broken.tenant_seq}{where}: "
                    f"{broken.reason}; {result.checked} entries before it are intact"
                )
        finally:
            await bus.close()
            await db.dispose()
        return intact

    if not asyncio.run(run()):
        raise SystemExit(1)
