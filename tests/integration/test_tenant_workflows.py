"""Tenancy's workflows, run by the real worker (in this test's process, on a task queue of its
own) against the real Temporal dev server, PostgreSQL (as the tenancy login), NATS (as the
worker's own user) and identity."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import Membership, MembershipQuery, Role, User
from saas.common.db import Database
from saas.common.db_roles import TENANCY
from saas.common.migrations import find_alembic_ini, tenant_revisions
from saas.common.process import ServiceProcess
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from saas.tenancy.backups import Server, archive_schemas
from saas.tenancy.settings import WorkerSettings
from saas.tenancy.workflows import deletion_id, provisioning_id
from saas.tenancy.workflows.deletion import TenantDeletionWorkflow
from saas.tenancy.workflows.inputs import TenantInput
from saas.tenancy.workflows.provisioning import TenantProvisioningWorkflow


@dataclass
class Worker:
    process: ServiceProcess
    queue: str
    faults: Path
    backups: Path

    @property
    def client(self):
        return self.process.temporal.client

    def inject(self, slug: str, step: str, what: str = "fail") -> None:
        planned = json.loads(self.faults.read_text()) if self.faults.exists() else {}
        planned.setdefault(slug, {})[step] = what
        self.faults.write_text(json.dumps(planned))

    def heal(self, slug: str) -> None:
        planned = json.loads(self.faults.read_text())
        planned.pop(slug, None)
        self.faults.write_text(json.dumps(planned))

    async def provision(self, tenant: TenantInput) -> str:
        return await self.client.execute_workflow(
            TenantProvisioningWorkflow.run,
            tenant,
            id=provisioning_id(tenant.tenant_id),
            task_queue=self.queue,
        )

    async def delete(self, tenant: TenantInput) -> str:
        return await self.client.execute_workflow(
            TenantDeletionWorkflow.run,
            tenant,
            id=deletion_id(tenant.tenant_id),
            task_queue=self.queue,
        )

    def metric(self, line_start: str) -> float:
        body, _ = self.process.metrics.render()
        for line in body.decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture(scope="module")
async def worker(stack, identity, tmp_path_factory) -> AsyncIterator[Worker]:
    from saas.tenancy.worker import build

    folder = tmp_path_factory.mktemp("worker")
    queue = f"tenancy-test-{uuid.uuid4().hex[:8]}"
    settings = WorkerSettings.load(
        app_env="test",
        database_url=stack.database_url(TENANCY.name),
        nats_url=stack.nats_url_for("tenancy-worker"),
        temporal_host=stack.temporal_host,
        temporal_task_queue=queue,
        tenancy_test_faults=folder / "faults.json",
        backup_dir=folder / "backups",
    )
    process = build(settings)
    await process.start()
    yield Worker(process, queue, folder / "faults.json", folder / "backups")
    await process.stop()


@pytest.fixture
async def tenancy_db(stack) -> AsyncIterator[Database]:
    db = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_url(TENANCY.name))
    )
    yield db
    await db.dispose()


async def creator(identity) -> str:
    email = await identity.signed_up()
    pair = await identity.login(email)
    return (await identity.call("users.me", Empty(), User, token=pair.access_token)).id


async def new_tenant(db: Database, created_by: str, prefix: str = "wf") -> TenantInput:
    """A tenant row as `POST tenants` commits it: provisioning, with its creator."""
    tenant = TenantInput(str(uuid.uuid4()), f"{prefix}-{uuid.uuid4().hex[:8]}", "Acme", created_by)
    async with db.session() as session:
        await session.execute(
            text(
                "INSERT INTO public.tenants (id, slug, name, status, created_by) "
                "VALUES (:id, :slug, :name, 'provisioning', :by)"
            ),
            {"id": tenant.tenant_id, "slug": tenant.slug, "name": tenant.name, "by": created_by},
        )
    return tenant


async def one(db: Database, sql: str, **params):
    async with db.session() as session:
        return (await session.execute(text(sql), params)).one_or_none()


async def events(db: Database, type_: str, tenant_id: str) -> list[dict]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT body FROM public.outbox WHERE type = :t AND tenant_key = :k ORDER BY seq"),
            {"t": type_, "k": tenant_id},
        )
        return [orjson.loads(body) for (body,) in rows]


async def role_of(identity, tenant: TenantInput) -> Role | None:
    query = MembershipQuery(tenant_id=tenant.tenant_id, user_id=tenant.created_by)
    return (await identity.call("internal.role", query, Membership)).role


async def test_provisioning_makes_a_ready_tenant_at_head_with_its_owner_and_one_event(
    worker, tenancy_db, identity
):
    tenant = await new_tenant(tenancy_db, await creator(identity))
    assert await worker.provision(tenant) == "ready"

    row = await one(
        tenancy_db,
        "SELECT status, failure_reason FROM public.tenants WHERE id = :i",
        i=tenant.tenant_id,
    )
    assert tuple(row) == ("ready", None)
    schema = schema_for(tenant.slug)
    version = await one(tenancy_db, f'SELECT version_num FROM "{schema}".alembic_version')
    assert version[0] == tenant_revisions(find_alembic_ini())[-1]
    seeded = await one(
        tenancy_db, f"SELECT value FROM \"{schema}\".settings WHERE key = 'timezone'"
    )
    assert seeded[0] == "UTC"
    assert await role_of(identity, tenant) is Role.OWNER
    created = await events(tenancy_db, "tenant.created", tenant.tenant_id)
    assert [e["data"] for e in created] == [
        {"tenant_id": tenant.tenant_id, "slug": tenant.slug, "name": "Acme", "schema_name": schema}
    ]
    execution = await one(
        tenancy_db,
        "SELECT status, step, finished_at IS NOT NULL FROM public.workflow_executions "
        "WHERE workflow_id = :w",
        w=provisioning_id(tenant.tenant_id),
    )
    assert tuple(execution) == ("completed", "mark_ready", True)
    assert worker.metric("saas_tenant_provisioning_duration_seconds_count") >= 1


async def test_every_step_runs_again_harmlessly(worker, tenancy_db, identity):
    """A worker that dies mid-way has its steps run again: a second run changes nothing and
    publishes nothing more."""
    tenant = await new_tenant(tenancy_db, await creator(identity))
    await worker.provision(tenant)
    assert await worker.provision(tenant) == "ready"  # a new run of the same id, all steps again
    assert len(await events(tenancy_db, "tenant.created", tenant.tenant_id)) == 1
    runs = await one(
        tenancy_db,
        "SELECT count(*), bool_and(status = 'completed') FROM public.workflow_executions WHERE workflow_id = :w",
        w=provisioning_id(tenant.tenant_id),
    )
    assert tuple(runs) == (2, True)


async def test_a_failed_step_is_compensated_and_a_retry_succeeds(worker, tenancy_db, identity):
    tenant = await new_tenant(tenancy_db, await creator(identity))
    schema = schema_for(tenant.slug)
    failures = 'saas_tenant_provisioning_failures_total{step="seed_defaults"}'
    before = worker.metric(failures)
    worker.inject(tenant.slug, "seed_defaults")

    with pytest.raises(WorkflowFailureError):
        await worker.provision(tenant)

    row = await one(
        tenancy_db,
        "SELECT status, failure_reason FROM public.tenants WHERE id = :i",
        i=tenant.tenant_id,
    )
    assert row.status == "failed"
    assert row.failure_reason == "seed_defaults: injected failure before seed_defaults"
    assert await one(tenancy_db, "SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema) is None
    failed = await events(tenancy_db, "tenant.provisioning_failed", tenant.tenant_id)
    assert [e["data"]["error"] for e in failed] == [row.failure_reason]
    assert worker.metric(failures) == before + 1
    assert await events(tenancy_db, "tenant.created", tenant.tenant_id) == []

    # What `POST tenants/{slug}/retry` does: back to provisioning, the workflow again.
    worker.heal(tenant.slug)
    async with tenancy_db.session() as session:
        await session.execute(
            text(
                "UPDATE public.tenants SET status = 'provisioning' WHERE id = :i AND status = 'failed'"
            ),
            {"i": tenant.tenant_id},
        )
    assert await worker.provision(tenant) == "ready"
    row = await one(
        tenancy_db,
        "SELECT status, failure_reason FROM public.tenants WHERE id = :i",
        i=tenant.tenant_id,
    )
    assert tuple(row) == ("ready", None)
    assert len(await events(tenancy_db, "tenant.created", tenant.tenant_id)) == 1


async def test_a_creator_whose_account_is_gone_fails_provisioning_for_good(worker, tenancy_db):
    tenant = await new_tenant(tenancy_db, str(uuid.uuid4()))  # nobody identity knows
    with pytest.raises(WorkflowFailureError):
        await worker.provision(tenant)
    row = await one(
        tenancy_db,
        "SELECT status, failure_reason FROM public.tenants WHERE id = :i",
        i=tenant.tenant_id,
    )
    assert row.status == "failed" and row.failure_reason.startswith("add_owner: ")


async def test_deletion_backs_up_then_drops_the_schema_and_publishes_once(
    worker, tenancy_db, identity, stack
):
    tenant = await new_tenant(tenancy_db, await creator(identity))
    await worker.provision(tenant)
    schema = schema_for(tenant.slug)
    async with tenancy_db.get_tenant_session(tenant.slug) as session:
        await session.execute(
            text(
                "INSERT INTO projects (id, name, created_by) VALUES (:i, 'kept in the backup', :i)"
            ),
            {"i": uuid.uuid4()},
        )
        await session.execute(
            text("UPDATE public.tenants SET status = 'deleting' WHERE id = :i"),
            {"i": tenant.tenant_id},
        )

    location = await worker.delete(tenant)

    backup = Path(location)
    assert backup.parent == worker.backups and await asyncio.to_thread(os.path.getsize, backup) > 0
    server = Server(stack.database_url(TENANCY.name))
    assert await archive_schemas(server, backup) == {schema}
    recorded = await one(
        tenancy_db,
        "SELECT location, reason FROM public.tenant_backups WHERE tenant_id = :i",
        i=tenant.tenant_id,
    )
    assert tuple(recorded) == (location, "deletion")
    assert await one(tenancy_db, "SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema) is None
    row = await one(
        tenancy_db,
        "SELECT status, deleted_at IS NOT NULL FROM public.tenants WHERE id = :i",
        i=tenant.tenant_id,
    )
    assert tuple(row) == ("deleted", True)
    deleted = await events(tenancy_db, "tenant.deleted", tenant.tenant_id)
    assert [e["data"] for e in deleted] == [{"tenant_id": tenant.tenant_id, "slug": tenant.slug}]

    assert await worker.delete(tenant) == location  # again: nothing more happens
    assert len(await events(tenancy_db, "tenant.deleted", tenant.tenant_id)) == 1


async def test_compensation_never_drops_a_ready_tenants_schema(worker, tenancy_db, identity):
    tenant = await new_tenant(tenancy_db, await creator(identity))
    await worker.provision(tenant)
    with pytest.raises(WorkflowFailureError):  # a deletion of a tenant nobody marked deleting
        await worker.client.execute_workflow(
            "TenantDeletionWorkflow",
            tenant,
            id=f"stray-{tenant.tenant_id}",
            task_queue=worker.queue,
            execution_timeout=__import__("datetime").timedelta(seconds=5),
        )
    assert await one(
        tenancy_db, "SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema_for(tenant.slug)
    )


async def test_the_worker_exports_the_temporal_sdks_metrics(worker):
    body, _ = worker.process.metrics.render()
    text_ = body.decode()
    assert "temporal_workflow_completed_total{" in text_
    assert "temporal_local_activity_execution_latency_bucket{" in text_


async def test_a_workflow_for_a_tenant_that_does_not_own_the_schema_never_drops_it(
    worker, tenancy_db, identity
):
    """A provisioning whose tenant is not in the database (a bug, a hand-started workflow) cannot
    compensate by dropping the schema its slug names: that schema is another tenant's."""
    owner = await new_tenant(tenancy_db, await creator(identity))
    await worker.provision(owner)
    impostor = TenantInput(str(uuid.uuid4()), owner.slug, "Impostor", None)
    with pytest.raises(WorkflowFailureError):
        await worker.provision(impostor)
    schema = schema_for(owner.slug)
    assert await one(tenancy_db, "SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema)
    status = await one(
        tenancy_db, "SELECT status FROM public.tenants WHERE id = :i", i=owner.tenant_id
    )
    assert status[0] == "ready"


async def test_recorded_histories_replay_in_the_sandbox(worker, tenancy_db, identity):
    """The worker runs workflows outside Temporal's sandbox (it costs a provisioning a third of
    its CPU); the sandbox still checks them here: real histories, a success, a compensation and
    a deletion, replayed with the sandboxed runner, which refuses non-determinism and restricted
    calls."""
    from temporalio.worker import Replayer

    ok = await new_tenant(tenancy_db, await creator(identity))
    await worker.provision(ok)
    broken = await new_tenant(tenancy_db, await creator(identity))
    worker.inject(broken.slug, "add_owner")
    with pytest.raises(WorkflowFailureError):
        await worker.provision(broken)
    async with tenancy_db.session() as session:
        await session.execute(
            text("UPDATE public.tenants SET status = 'deleting' WHERE id = :i"), {"i": ok.tenant_id}
        )
    await worker.delete(ok)

    histories = [
        await worker.client.get_workflow_handle(workflow_id).fetch_history()
        for workflow_id in (
            provisioning_id(ok.tenant_id),
            provisioning_id(broken.tenant_id),
            deletion_id(ok.tenant_id),
        )
    ]
    replayer = Replayer(workflows=[TenantProvisioningWorkflow, TenantDeletionWorkflow])
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
        assert result.replay_failure is None
