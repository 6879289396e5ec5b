"""Starting tenancy's workflows (the service does, and its reconciler): by an id derived from
the tenant, so asking again while one runs gets the running one, never a second.

A start waits for Temporal a few seconds at most: the tenant is committed before, so a caller
must not wait on a Temporal that is away (the gateway would time out, the request look failed
though the tenant exists); the reconciler starts the workflow once Temporal is back.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from saas.common.temporal import Temporal
from saas.tenancy.workflows import (
    DELETION_WORKFLOW,
    PROVISIONING_WORKFLOW,
    deletion_id,
    provisioning_id,
)
from saas.tenancy.workflows.inputs import TenantInput

START_TIMEOUT = 3.0  # seconds


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
