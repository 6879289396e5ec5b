"""Workflow starts made in the background by tenancy: tried again before the reconciler's turn."""

from __future__ import annotations

import asyncio

from saas.tenancy.workflows import starter
from saas.tenancy.workflows.inputs import TenantInput
from saas.tenancy.workflows.starter import Starts

TENANT = TenantInput(
    tenant_id="9b2f4c1e-2f8a-4d8e-9a51-0c6f1b3d2e77",
    slug="acme",
    name="Acme",
    created_by="4d1c8f0a-6b2e-4f3a-8c9d-1e2f3a4b5c6d",
)


async def test_a_start_that_times_out_under_load_is_tried_again(monkeypatch):
    monkeypatch.setattr(starter, "backoff", lambda attempt, **_: 0.01)
    calls = []

    async def busy_then_fine(temporal, task_queue, tenant) -> None:
        calls.append(tenant.tenant_id)
        if len(calls) < 3:
            raise TimeoutError("the server is busy with a burst of starts")

    starts = Starts(temporal=None, task_queue="tenancy")
    starts.soon(busy_then_fine, TENANT)
    await starts.stop()
    assert calls == [TENANT.tenant_id] * 3


async def test_a_start_that_keeps_failing_is_left_to_the_reconciler_after_a_few_tries(monkeypatch):
    monkeypatch.setattr(starter, "backoff", lambda attempt, **_: 0.01)
    calls = []

    async def away(temporal, task_queue, tenant) -> None:
        calls.append(tenant.tenant_id)
        raise ConnectionError("Temporal is away")

    starts = Starts(temporal=None, task_queue="tenancy")
    starts.soon(away, TENANT)
    await starts.stop()
    await asyncio.sleep(0)
    assert len(calls) == starter.START_ATTEMPTS
