"""Starting tenancy's workflows (the service does, and its reconciler): by an id derived from
the tenant, so asking again while one runs gets the running one, never a second.

The service starts them in the background (`Starts`), after the tenant is committed: a caller
never waits on Temporal (were it away or slow, the gateway would time out and the request look
failed though the tenant exists). A start waits a few seconds at most and is tried again a few
times (a server busy with a burst of starts answers a later one); one that still fails is left to
the reconciler, which starts the workflow once Temporal is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from saas.common.components import Component
from saas.common.lifecycle import backoff
from saas.common.logging import get_logger
from saas.common.temporal import Temporal
from saas.tenancy.workflows import (
    DELETION_WORKFLOW,
    PROVISIONING_WORKFLOW,
    deletion_id,
    provisioning_id,
)
from saas.tenancy.workflows.inputs import TenantInput

log = get_logger(__name__)
START_TIMEOUT = 3.0  # seconds
START_ATTEMPTS = 4  # 0.5, 1 and 2 s apart: a start has some 15 s before the reconciler's turn
Start = Callable[[Temporal, str, TenantInput], Awaitable[None]]


async def start_provisioning(temporal: Temporal, task_queue: str, tenant: TenantInput) -> None:
    await _start(
        temporal, task_queue, PROVISIONING_WORKFLOW, provisioning_id(tenant.tenant_id), tenant
    )


async def start_deletion(temporal: Temporal, task_queue: str, tenant: TenantInput) -> None:
    await _start(temporal, task_queue, DELETION_WORKFLOW, deletion_id(tenant.tenant_id), tenant)


async def _start(
    temporal: Temporal, task_queue: str, workflow: str, workflow_id: str, tenant: TenantInput
) -> None:
    start = temporal.client.start_workflow(
        workflow,
        tenant,
        id=workflow_id,
        task_queue=task_queue,
        # One run at a time per tenant; a finished one (a failed provisioning) may run again.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        rpc_timeout=timedelta(seconds=START_TIMEOUT),
    )
    # The client retries an unreachable server on its own: bound the whole call too.
    await asyncio.wait_for(start, START_TIMEOUT + 1)


class Starts(Component):
    """Workflow starts under way in the background; at shutdown they get a moment to finish (a
    start lost then is the reconciler's)."""

    name = "tenancy-workflow-starts"

    def __init__(self, temporal: Temporal, task_queue: str) -> None:
        self.temporal = temporal
        self.task_queue = task_queue
        self._pending: set[asyncio.Task[None]] = set()

    def soon(self, start: Start, tenant: TenantInput) -> None:
        task = asyncio.create_task(self._run(start, tenant), name=f"start {tenant.tenant_id}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, start: Start, tenant: TenantInput) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await start(self.temporal, self.task_queue, tenant)
                return
            except Exception as exc:  # committed already: the reconciler starts it later
                if attempt == START_ATTEMPTS:
                    log.warning(
                        "could not start the tenant's workflow; the reconciler will",
                        tenant_id=tenant.tenant_id,
                        attempts=attempt,
                        error=repr(exc),
                    )
                    return
                # A busy server (a burst of creates) answers the next try; the reconciler
                # comes only after TENANCY_RECONCILE_AFTER.
                await asyncio.sleep(backoff(attempt, first=0.5, cap=4.0))

    async def start(self) -> None:
        """Nothing to begin: starts are made as requests commit tenants."""

    async def stop(self) -> None:
        """After the last requests: the starts they made get a moment to finish."""
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._pending, return_exceptions=True), START_TIMEOUT + 1
                )
