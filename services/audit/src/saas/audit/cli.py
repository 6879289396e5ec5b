"""`saas audit`: run the audit service."""

from __future__ import annotations

import click

from saas.common import db_roles
from saas.common.cli import ProcessSpec, service_group

AUDIT = ProcessSpec(
    "audit",
    "saas.audit.main:build",
    8003,
    "AUDIT_OPS_URL",
    "AUDIT_OPS_PORT",
    order=10,
    database_login=db_roles.AUDIT.name,
)
PROCESSES = [AUDIT]

command = service_group(
    AUDIT, "Run the audit service (NATS responders plus /health, /health/ready, /metrics)."
)


@command.command()
@click.argument("tenant_ids", nargs=-1)
@click.option("--all", "all_tenants", is_flag=True, help="every tenant in the log")
def verify(tenant_ids: tuple[str, ...], all_tenants: bool) -> None:
    """Walk tenants' hash chains in the database; exit 1 if any link is broken.

    For operators and scheduled integrity checks; connects with DATABASE_URL as the audit role.
    """
    import asyncio

    if not tenant_ids and not all_tenants:
        raise click.UsageError("name one or more tenant ids, or --all")

    async def run() -> bool:
        import sqlalchemy as sa

        from saas.audit import store
        from saas.audit.main import AuditSettings
        from saas.common.db import Database

        db = Database.from_settings(AuditSettings.load(db_pool_size=1, db_max_overflow=0))
        intact = True
        try:
            async with db.session() as session:
                tenants = list(tenant_ids)
                if all_tenants:
                    query = (
                        sa.select(store.events.c.tenant_key)
                        .distinct()
                        .order_by(store.events.c.tenant_key)
                    )
                    tenants = [t for t in (await session.execute(query)).scalars() if t]
                for tenant in tenants:
                    result = await store.verify(session, tenant)
                    if result.ok:
                        click.echo(f"{tenant}: intact, {result.checked} entries")
                    else:
                        intact = False
                        broken = result.first_broken
                        assert broken is not None
                        click.echo(
                            f"{tenant}: BROKEN at entry {broken.tenant_seq} (event {broken.event_id}): "
                            f"{broken.reason}; {result.checked} entries before it are intact"
                        )
        finally:
            await db.dispose()
        return intact

    if not asyncio.run(run()):
        raise SystemExit(1)
