"""The reconciler: every tenant that should have a workflow running has one.

A tenant is committed as `provisioning` (or `deleting`) before its workflow is started; a
process that dies in between, Temporal being away at that moment, or a workflow terminated by
hand would leave it there forever. Every `TENANCY_RECONCILE_INTERVAL` the reconciler starts the
workflow of each tenant that has been provisioning or deleting for `TENANCY_RECONCILE_AFTER`:
starting by the tenant's workflow id is a no-op while one runs. One replica does it per round
(an advisory lock). It also forgets `Idempotency-Key`s older than a day.
"""

from __future__ import annotations

import asyncio
import contextlib

import sqlalchemy as sa

from saas.common.components import Component
from saas.common.contracts.tenancy import TenantStatus
from saas.common.logging import get_logger
from saas.tenancy.deps import Deps
from saas.tenancy.directory import Tenant
from saas.tenancy.lifecycle import IN_FLIGHT
from saas.tenancy.store.tables import idempotency_keys, tenants
from saas.tenancy.workflows.inputs import TenantInput
from saas.tenancy.workflows.starter import start_deletion, start_provisioning

log = get_logger(__name__)
KEYS_KEPT = "1 day"


class Reconciler(Component):
    name = "tenancy-reconciler"

    def __init__(self, deps: Deps, *, interval: float, after: float) -> None:
        self.deps = deps
        self.interval = interval
        self.after = after
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def drain(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.reconcile()
            except Exception as exc:
                log.warning("reconciling tenants failed; trying again later", error=repr(exc))

    async def reconcile(self) -> int:
        """One round; returns how many workflows it (re)started."""
        async with self.deps.db.session() as session:
            mine = await session.execute(
                sa.select(sa.func.pg_try_advisory_xact_lock(sa.func.hashtext("tenancy.reconciler")))
            )
            if not mine.scalar():
                return 0  # another replica is at it
            stuck = [
                Tenant.from_row(r)
                for r in await session.execute(
                    sa.select(tenants).where(
                        tenants.c.status.in_([s.value for s in IN_FLIGHT]),
                        tenants.c.status_changed_at
                        < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, self.after),
                    )
                )
            ]
            await session.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.created_at
                    < sa.func.now() - sa.text(f"interval '{KEYS_KEPT}'")
                )
            )
        for tenant in stuck:
            start = (
                start_provisioning if tenant.status is TenantStatus.PROVISIONING else start_deletion
            )
            data = TenantInput(tenant.id, tenant.slug, tenant.name, tenant.created_by)
            try:
                await start(self.deps.temporal, self.deps.task_queue, data)
            except Exception as exc:
                log.warning(
                    "could not start a tenant's workflow", tenant_id=tenant.id, error=repr(exc)
                )
        return len(stuck)
