"""Benchmark: tenant provisioning through the gateway, and `saas tenants migrate-all`.

Starts embedded PostgreSQL (durable), NATS and the Temporal dev server (or uses the servers in
DATABASE_URL / NATS_URL / TEMPORAL_HOST), applies the release steps, and runs the real identity,
tenancy, tenancy-worker and gateway processes. Prints:

- provisioning one after another (`--sequential`, 10): for each tenant, the time from its
  `POST /api/v1/tenants` to its `tenant.created` arriving from JetStream; p50, p99;
- provisioning together (`--together`, 50): as many creates at once; p50, p99, tenants/s (all of
  them over the time to the last `tenant.created`), and how many ended ready / failed / other;
- `saas tenants migrate-all` (as an operator runs it: the command, the tenancy login) over
  `--tenants` (1,000) tenant schemas: with nothing to do, then with one new (throwaway) tenant
  migration after `saas migrate` brought the template to it, then with nothing to do again.

    .venv/bin/python bench/provisioning.py
    .venv/bin/python bench/provisioning.py --tenants 1000 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from nats.js.api import DeliverPolicy
from temporalio.client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.harness import Bench, processes_running, servers_running  # noqa: E402
from bench.measure import CpuMeter  # noqa: E402
from saas.common.bus import Bus  # noqa: E402
from saas.common.db import Database  # noqa: E402
from saas.common.db_roles import MIGRATE, TENANCY  # noqa: E402
from saas.common.events import parse_event  # noqa: E402
from saas.common.settings import DatabaseSettings  # noqa: E402
from saas.common.tenant_names import schema_for  # noqa: E402
from saas.tenancy.schemas import Cloner  # noqa: E402
from saas.tenancy.workflows import provisioning_id  # noqa: E402

PASSWORD = "plum-orbit-castle-91"
PROCESSES = ("identity", "tenancy", "tenancy-worker", "gateway")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Announcements:
    """When each `tenant.created` arrived from JetStream (this process's clock)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.arrived: dict[str, float] = {}
        self.wall: dict[str, float] = {}  # the same moments by the wall clock (the database's)
        self._changed = asyncio.Event()

    async def start(self) -> None:
        async def seen(message) -> None:
            event = parse_event(message.data)
            self.arrived.setdefault(event.tenant_id, time.perf_counter())
            self.wall.setdefault(event.tenant_id, time.time())
            self._changed.set()

        await self.bus.js.subscribe(
            "tenant.created", cb=seen, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )

    async def wait(self, ids: set[str], timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not ids <= self.arrived.keys() and time.perf_counter() < deadline:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), deadline - time.perf_counter())
            except TimeoutError:
                break


async def owner_token(http: httpx.AsyncClient) -> str:
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    credentials = {"email": email, "password": PASSWORD}
    registered = await http.post("/api/v1/auth/register", json=credentials)
    assert registered.status_code == 202, registered.text
    login = await http.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    return login.json()["access_token"]


async def create(http: httpx.AsyncClient, token: str, prefix: str) -> tuple[str, float]:
    slug = f"{prefix}-{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    response = await http.post(
        "/api/v1/tenants",
        json={"slug": slug, "name": slug},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": slug},
    )
    assert response.status_code == 202, response.text
    return response.json()["id"], started


async def statuses(db: Database, ids: list[str]) -> dict[str, int]:
    async with db.session() as session:
        rows = await session.execute(
            text("SELECT status, count(*) FROM public.tenants WHERE id = ANY(:i) GROUP BY 1"),
            {"i": [uuid.UUID(i) for i in ids]},
        )
        return dict(rows.all())


class CpuAccount:
    """CPU seconds each of our processes, PostgreSQL (the server and its backends), the Temporal
    dev server, NATS and the whole machine spent between two moments (the machine's includes
    anyone else's work); PostgreSQL's also by whose connections spent it."""

    def __init__(self, bench: Bench, servers: dict[str, psutil.Process]) -> None:
        processes = {
            name: psutil.Process(child.process.pid)
            for name, child in bench.children.items()
            if child.process is not None
        }
        self.meter = CpuMeter({**processes, **servers}, trees=tuple(servers))
        self.postgres = servers.get("postgres")
        self.backends = self._backends()
        self.sessions = 0
        self.meter.start()

    @classmethod
    async def begin(
        cls, bench: Bench, servers: dict[str, psutil.Process], db: Database
    ) -> CpuAccount:
        account = cls(bench, servers)
        account.sessions = await _sessions(db)
        return account

    def _backends(self) -> dict[int, float]:
        if self.postgres is None:
            return {}
        found = {}
        for p in self.postgres.children(recursive=True):
            try:
                found[p.pid] = sum(p.cpu_times()[:2])
            except psutil.Error:
                continue
        return found

    async def per(self, count: int, db: Database) -> str:
        used, machine = self.meter.stop()
        spent = {**used, "machine": machine}
        line = ", ".join(f"{k} {ms(v / count)}" for k, v in spent.items())
        if self.postgres is None:
            return line
        after = self._backends()
        async with db.session() as session:
            rows = await session.execute(
                text(
                    "SELECT pid, coalesce(nullif(application_name, ''), backend_type) FROM pg_stat_activity"
                )
            )
            names = dict(rows.all())
        by: dict[str, float] = {}
        for pid, cpu in after.items():
            name = names.get(pid) or "other"
            by[name] = by.get(name, 0.0) + cpu - self.backends.get(pid, 0.0)
        by["ended connections, the server's own"] = used["postgres"] - sum(by.values())
        ranked = sorted(by.items(), key=lambda kv: -kv[1])
        opened = await _sessions(db) - self.sessions
        return (
            line
            + "\n  postgres by connection: "
            + ", ".join(f"{k} {ms(v / count)}" for k, v in ranked if v >= 0.0005 * count)
            + f"; {opened} connections opened ({opened / count:.1f} per tenant)"
        )


async def _sessions(db: Database) -> int:
    """Connections the database has had since its statistics began (PostgreSQL 14 and later)."""
    async with db.session() as session:
        found = await session.execute(
            text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        )
        return int(found.scalar() or 0)


async def stages(db: Database, ids: list[str], wall: dict[str, float]) -> str:
    """Where the time went, by the database's and Temporal's clocks: from the create's
    transaction to the workflow's start in Temporal (tenancy commits and starts it), to the
    worker's first step (the worker picks it up),
    the steps (clone, seed, owner, until mark_ready begins), then to `tenant.created` arriving
    (mark_ready commits, the relay publishes, JetStream delivers)."""
    async with db.session() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT t.id::text, extract(epoch FROM t.created_at),"
                    " extract(epoch FROM w.created_at), extract(epoch FROM w.finished_at)"
                    " FROM public.tenants t JOIN public.workflow_executions w ON w.tenant_id = t.id"
                    " WHERE t.id = ANY(:i) AND w.status = 'completed'"
                ),
                {"i": [uuid.UUID(i) for i in ids]},
            )
        ).all()
    parts: dict[str, list[float]] = {
        "to Temporal": [],
        "to the worker": [],
        "steps": [],
        "to the event": [],
    }
    temporal = await Client.connect(os.environ["TEMPORAL_HOST"])
    for tenant_id, created, picked, ready in rows:
        described = await temporal.get_workflow_handle(provisioning_id(tenant_id)).describe()
        started = described.start_time.timestamp()
        parts["to Temporal"].append(started - float(created))
        parts["to the worker"].append(float(picked) - started)
        parts["steps"].append(float(ready) - float(picked))
        if tenant_id in wall:
            parts["to the event"].append(wall[tenant_id] - float(ready))
    return "; ".join(
        f"{name} p50 {ms(statistics.median(v))} p99 {ms(pct(v, 0.99))}"
        for name, v in parts.items()
        if v
    )


async def provisioning(
    args: argparse.Namespace, bench: Bench, servers: dict[str, psutil.Process]
) -> None:
    gateway = bench.children["gateway"].public_url
    bus = Bus(bench.nats_url, name="bench-provisioning")
    await bus.connect()
    db = Database.from_settings(DatabaseSettings(database_url=bench.logins.url(TENANCY.name)))
    announcements = Announcements(bus)
    await announcements.start()
    try:
        async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
            token = await owner_token(http)
            for _ in range(3):  # warm up: first clone reads the template, first workflow task...
                tenant, _ = await create(http, token, "warm")
                await announcements.wait({tenant}, 30)

            latencies = []
            sequential = []
            for _ in range(args.sequential):
                tenant, started = await create(http, token, "one")
                sequential.append(tenant)
                await announcements.wait({tenant}, 30)
                latencies.append(announcements.arrived[tenant] - started)
            if latencies:
                print(
                    f"one after another: {args.sequential} tenants, create -> tenant.created "
                    f"p50 {ms(statistics.median(latencies))}, p99 {ms(pct(latencies, 0.99))}, "
                    f"max {ms(max(latencies))}"
                )
                print(f"  {await stages(db, sequential, announcements.wall)}")

            if not args.together:
                return
            for burst in range(1, args.bursts + 1):
                await together(args, bench, servers, db, http, token, announcements, burst)
    finally:
        await db.dispose()
        await bus.close()


async def together(args, bench, servers, db, http, token, announcements, burst: int) -> None:
    """`args.together` creates at once; the first burst finds the processes' pools as the
    sequential part left them, later ones find them as the burst before left them."""
    cpu = await CpuAccount.begin(bench, servers, db)
    begun = time.perf_counter()
    made = await asyncio.gather(*(create(http, token, "burst") for _ in range(args.together)))
    ids = {t for t, _ in made}
    await announcements.wait(ids, 120)
    arrived = [announcements.arrived[t] - s for t, s in made if t in announcements.arrived]
    last = max(announcements.arrived[t] for t in ids if t in announcements.arrived)
    ended = await statuses(db, list(ids))
    print(
        f"together (burst {burst}): {args.together} tenants, create -> tenant.created "
        f"p50 {ms(statistics.median(arrived))}, p99 {ms(pct(arrived, 0.99))}, "
        f"{len(arrived) / (last - begun):.1f} tenants/s; ended {ended}"
    )
    print(f"  CPU per tenant: {await cpu.per(args.together, db)}")
    print(f"  {await stages(db, list(ids), announcements.wall)}")


# -- migrate-all ---------------------------------------------------------------------------------
async def seed_tenants(bench: Bench, count: int) -> None:
    """`count` ready tenants, cloned the way provisioning clones them (without the workflow:
    this part measures migrate-all, not provisioning)."""
    db = Database.from_settings(
        DatabaseSettings(database_url=bench.logins.url(TENANCY.name), db_pool_size=8)
    )
    cloner = Cloner()
    limit = asyncio.Semaphore(8)

    async def one(n: int) -> None:
        slug = f"many-{n:05d}-{uuid.uuid4().hex[:6]}"
        async with limit, db.session() as session:
            await cloner.clone(session, schema_for(slug))
            await session.execute(
                text(
                    "INSERT INTO public.tenants (id, slug, name, status) VALUES (:i, :s, :s, 'ready')"
                ),
                {"i": uuid.uuid4(), "s": slug},
            )

    try:
        await asyncio.gather(*(one(n) for n in range(count)))
    finally:
        await db.dispose()


def migrate_all(bench: Bench, migrations: Path, concurrency: int) -> tuple[float, str]:
    """The wall time of a run, and its summary line with the CPU seconds the command and the
    processes it started spent (user + system: less sensitive to other people's load)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "saas.common.cli",
            "tenants",
            "migrate-all",
            "--quiet",
            "--concurrency",
            str(concurrency),
        ],
        env={
            **os.environ,
            "DATABASE_URL": bench.logins.url(TENANCY.name),
            "MIGRATIONS_DIR": str(migrations),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"migrate-all failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, f"{done.stderr.strip().splitlines()[-1]}; CPU {cpu:.2f} s"


def startup() -> float:
    """Seconds for the command to start and exit doing nothing: part of every run's wall time."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "tenants", "--help"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def with_a_new_tenant_migration(folder: Path) -> Path:
    from tests.support.databases import migrations_with_a_new_tenant_revision

    return migrations_with_a_new_tenant_revision(folder, revision="9901", column="bench_flag")


async def migrating(args: argparse.Namespace, bench: Bench) -> None:
    started = time.perf_counter()
    await seed_tenants(bench, args.tenants)
    print(
        f"seeded {args.tenants} tenant schemas by cloning in {time.perf_counter() - started:.1f} s"
    )
    here = ROOT / "migrations"
    print(f"the saas command starting (tenants --help): {startup():.2f} s")
    elapsed, summary = migrate_all(bench, here, args.concurrency)
    print(f"migrate-all, nothing to do:        {elapsed:.2f} s ({summary})")

    new = with_a_new_tenant_migration(
        Path(tempfile.mkdtemp(prefix="bench-migrations-", dir=bench.folder))
    )
    os.environ["MIGRATIONS_DIR"] = str(new)
    from saas.tenancy.release import keep_template_at_head

    await asyncio.to_thread(keep_template_at_head, bench.logins.url(MIGRATE.name))  # `saas migrate`
    elapsed, summary = migrate_all(bench, new, args.concurrency)
    print(
        f"migrate-all, one new migration:    {elapsed:.2f} s at concurrency {args.concurrency} ({summary})"
    )
    elapsed, summary = migrate_all(bench, new, args.concurrency)
    print(f"migrate-all, nothing to do again:  {elapsed:.2f} s ({summary})")
    os.environ["MIGRATIONS_DIR"] = str(here)


async def run(args: argparse.Namespace) -> None:
    async with (
        servers_running(("postgres", "nats", "temporal")) as at,
        processes_running(at, PROCESSES) as children,
    ):
        bench = Bench(at.folder, at.logins, at.nats_url, children, at.env, at.server_processes())
        if args.together or args.sequential:
            await provisioning(args, bench, at.server_processes())
        if args.tenants:
            await migrating(args, bench)


def main() -> None:
    parser = argparse.ArgumentParser(description="tenant provisioning and migrate-all")
    parser.add_argument("--sequential", type=int, default=10)
    parser.add_argument("--together", type=int, default=50)
    parser.add_argument("--bursts", type=int, default=2, help="rounds of --together")
    parser.add_argument("--tenants", type=int, default=1000, help="for migrate-all (0: skip)")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
