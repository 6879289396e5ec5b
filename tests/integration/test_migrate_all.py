"""`saas tenants migrate-all` against a database of the test's own, where a release brings a new
tenant migration: every tenant ends at the new head, those provisioned while it runs included;
failures are named and the others still migrated; running it again is safe."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from saas.common.db import Database
from saas.common.migrations import tenant_revisions
from saas.common.process import ServiceProcess
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from saas.tenancy.settings import WorkerSettings
from saas.tenancy.workflows import provisioning_id
from saas.tenancy.workflows.inputs import TenantInput
from saas.tenancy.workflows.provisioning import TenantProvisioningWorkflow
from tests.support.databases import (
    ROOT,
    PrivateDatabase,
    create_private_database,
    drop_private_database,
    migrations_with_a_new_tenant_revision,
)

OLD = ROOT / "migrations"


@dataclass
class Release:
    """A database and the migrations of two releases: `old`, and `new` with one more revision."""

    database: PrivateDatabase
    old: Path
    new: Path
    faults: Path

    @property
    def new_head(self) -> str:
        return tenant_revisions(self.new / "alembic.ini")[-1]


@pytest.fixture
async def release(stack, tmp_path) -> AsyncIterator[Release]:
    database = await create_private_database(stack, OLD / "alembic.ini")
    new = migrations_with_a_new_tenant_revision(tmp_path)
    yield Release(database, OLD, new, tmp_path / "faults.json")
    await drop_private_database(stack, database)


async def saas_migrate_template(release: Release, migrations: Path, monkeypatch) -> None:
    """The release step of `saas migrate` for tenancy, with a release's migrations."""
    from saas.tenancy.release import keep_template_at_head

    monkeypatch.setenv("MIGRATIONS_DIR", str(migrations))
    await asyncio.to_thread(keep_template_at_head, release.database.migrate_url)


async def start_worker(
    stack, release: Release, migrations: Path, monkeypatch
) -> tuple[ServiceProcess, str]:
    from saas.tenancy.worker import build

    monkeypatch.setenv("MIGRATIONS_DIR", str(migrations))
    queue = f"migrate-all-{uuid.uuid4().hex[:8]}"
    process = build(
        WorkerSettings.load(
            app_env="test",
            database_url=release.database.tenancy_url,
            nats_url=stack.nats_url_for("tenancy-worker"),
            temporal_host=stack.temporal_host,
            temporal_task_queue=queue,
            tenancy_test_faults=release.faults,
        )
    )
    await process.start()
    return process, queue


async def new_tenants(db: Database, count: int, prefix: str) -> list[TenantInput]:
    made = [
        TenantInput(str(uuid.uuid4()), f"{prefix}-{uuid.uuid4().hex[:8]}", "T")
        for _ in range(count)
    ]
    async with db.session() as session:
        for t in made:
            await session.execute(
                text(
                    "INSERT INTO public.tenants (id, slug, name, status) VALUES (:i, :s, 'T', 'provisioning')"
                ),
                {"i": t.tenant_id, "s": t.slug},
            )
    return made


async def provision(worker: ServiceProcess, queue: str, tenants: list[TenantInput]) -> list[str]:
    client = worker.temporal.client
    return await asyncio.gather(
        *(
            client.execute_workflow(
                TenantProvisioningWorkflow.run, t, id=provisioning_id(t.tenant_id), task_queue=queue
            )
            for t in tenants
        )
    )


# The command as `saas` runs it, saying at exit which of SQLAlchemy and Alembic it had loaded.
SAYING_WHAT_IT_LOADED = """
import atexit, runpy, sys
atexit.register(lambda: print("loaded:", sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic"})))
sys.argv = ["saas", "tenants", "migrate-all", *sys.argv[1:]]
runpy.run_module("saas.common.cli", run_name="__main__", alter_sys=True)
"""


async def migrate_all(release: Release, migrations: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SAYING_WHAT_IT_LOADED,
        *args,
        env={
            **os.environ,
            "DATABASE_URL": release.database.tenancy_url,
            "MIGRATIONS_DIR": str(migrations),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode()


async def versions(db: Database, tenants: list[TenantInput]) -> dict[str, str]:
    async with db.session() as session:
        found = {}
        for t in tenants:
            schema = schema_for(t.slug)
            row = await session.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
            found[t.slug] = row.scalar()
        return found


async def has_new_column(db: Database, tenant: TenantInput) -> bool:
    async with db.session() as session:
        found = await session.execute(
            text(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = :s "
                "AND table_name = 'projects' AND column_name = 'archived_at'"
            ),
            {"s": schema_for(tenant.slug)},
        )
        return found.scalar() is not None


@pytest.fixture
async def tenancy_db(release) -> AsyncIterator[Database]:
    db = Database.from_settings(DatabaseSettings.load(database_url=release.database.tenancy_url))
    yield db
    await db.dispose()


async def test_tenants_provisioned_while_migrate_all_runs_all_end_at_the_new_head(
    stack, release, tenancy_db, monkeypatch
):
    # The old release: its template, its worker, twenty ready tenants at its head.
    await saas_migrate_template(release, release.old, monkeypatch)
    old_worker, old_queue = await start_worker(stack, release, release.old, monkeypatch)
    try:
        settled = await new_tenants(tenancy_db, 20, "settled")
        assert await provision(old_worker, old_queue, settled) == ["ready"] * 20
    finally:
        await old_worker.stop()

    # The new release's worker is up before `saas migrate` has run: five tenants are cloned from
    # the old template and held there, still provisioning, until migrate-all is done.
    new_worker, new_queue = await start_worker(stack, release, release.new, monkeypatch)
    try:
        early = await new_tenants(tenancy_db, 5, "early")
        release.faults.write_text(json.dumps({t.slug: {"migrate_schema": "hold"} for t in early}))
        held = asyncio.ensure_future(provision(new_worker, new_queue, early))
        await _until_cloned(tenancy_db, early)

        # The release: `saas migrate` (the template first), then migrate-all while more tenants
        # are being provisioned.
        await saas_migrate_template(release, release.new, monkeypatch)
        late = await new_tenants(tenancy_db, 15, "late")
        outcome, provisioned = await asyncio.gather(
            migrate_all(release, release.new, "--concurrency", "2"),
            provision(new_worker, new_queue, late),
        )
        assert provisioned == ["ready"] * 15
        release.faults.write_text("{}")
        assert await held == ["ready"] * 5
    finally:
        await new_worker.stop()

    code, output = outcome
    assert code == 0, output
    for tenant in early:  # provisioning when it ran, their schemas at the old head: migrated
        assert f"migrated {schema_for(tenant.slug)} " in output
    everyone = settled + early + late
    assert set((await versions(tenancy_db, everyone)).values()) == {release.new_head}
    assert all([await has_new_column(tenancy_db, t) for t in everyone])
    async with tenancy_db.session() as session:
        statuses = await session.execute(text("SELECT DISTINCT status FROM public.tenants"))
        assert statuses.scalars().all() == ["ready"]

    again_code, again = await migrate_all(release, release.new)
    assert again_code == 0 and "0 migrated, 40 already at head, 0 failed" in again


async def test_a_tenant_cloned_from_a_template_a_release_behind_reaches_the_workers_head(
    stack, release, tenancy_db, monkeypatch
):
    """A new worker running before `saas migrate` clones the old template: it migrates the
    clone itself."""
    await saas_migrate_template(release, release.old, monkeypatch)
    worker, queue = await start_worker(stack, release, release.new, monkeypatch)
    try:
        tenants = await new_tenants(tenancy_db, 2, "catching-up")
        assert await provision(worker, queue, tenants) == ["ready"] * 2
    finally:
        await worker.stop()
    assert set((await versions(tenancy_db, tenants)).values()) == {release.new_head}
    async with tenancy_db.session() as session:
        template = await session.execute(
            text('SELECT version_num FROM "tenant_template".alembic_version')
        )
        assert template.scalar() != release.new_head  # the template itself is still behind


async def _until_cloned(db: Database, tenants: list[TenantInput], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while True:
            async with db.session() as session:
                done = await session.execute(
                    text(
                        "SELECT count(*) FROM public.workflow_executions "
                        "WHERE tenant_id = ANY(:t) AND step = 'create_schema'"
                    ),
                    {"t": [uuid.UUID(t.tenant_id) for t in tenants]},
                )
                if done.scalar() == len(tenants):
                    return
            await asyncio.sleep(0.1)


async def test_migrate_all_names_its_failures_goes_on_and_can_run_again(
    stack, release, tenancy_db, monkeypatch
):
    await saas_migrate_template(release, release.old, monkeypatch)
    worker, queue = await start_worker(stack, release, release.old, monkeypatch)
    try:
        tenants = await new_tenants(tenancy_db, 6, "mixed")
        await provision(worker, queue, tenants)
    finally:
        await worker.stop()
    broken = tenants[2]
    async with tenancy_db.get_tenant_session(broken.slug) as session:  # the column exists already
        await session.execute(text("ALTER TABLE projects ADD COLUMN archived_at timestamptz"))

    early, output = await migrate_all(release, release.new)
    assert early != 0 and "run `saas migrate` first" in output  # the template is still behind

    await saas_migrate_template(release, release.new, monkeypatch)
    code, output = await migrate_all(release, release.new, "--concurrency", "3")
    assert code == 1
    assert f"failed   {schema_for(broken.slug)} at " in output and "already exists" in output
    assert f"not migrated: {schema_for(broken.slug)}" in output
    found = await versions(tenancy_db, tenants)
    assert {slug for slug, v in found.items() if v == release.new_head} == {
        t.slug for t in tenants if t is not broken
    }

    async with tenancy_db.get_tenant_session(broken.slug) as session:
        await session.execute(text("ALTER TABLE projects DROP COLUMN archived_at"))
    code, output = await migrate_all(release, release.new)
    assert code == 0 and "1 migrated, 5 already at head, 0 failed" in output, output

    # With nothing to do, the plan is read through asyncpg alone: neither is loaded (the
    # processes that migrate load them, and there are none).
    code, output = await migrate_all(release, release.new)
    assert code == 0 and "0 migrated, 6 already at head, 0 failed" in output, output
    assert "loaded: []" in output, output
