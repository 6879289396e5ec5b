"""Our side of the events benchmark: outbox -> relay -> JetStream -> audit consumer -> audit.events.

The writer puts `membership.added` events for a few tenants into `identity.outbox` exactly as a
service does (`new_event`, then `Outbox.add` inside its transaction, --per-tx events per
transaction); the real identity process relays them and the real audit process appends them to
the hash-chained log. The run ends when `audit.events` holds all of them, and checks that each
event is there exactly once and that every tenant's chain verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.request
from dataclasses import dataclass

import psutil
from sqlalchemy import text

from bench.harness import Servers, processes_running
from bench.measure import ALONGSIDE, DRAINED, CpuMeter, Result, pct
from saas.audit import store
from saas.common.db import Database
from saas.common.events import Actor, new_event
from saas.common.events.catalogue import MembershipAdded
from saas.common.events.outbox import Outbox
from saas.common.settings import DatabaseSettings

SIDE = "ours"


@dataclass(frozen=True)
class Load:
    tag: str  # every tenant of the run starts with it
    events: int
    per_tx: int
    tenants: list[str]
    rate: float = 0.0  # offered events/s; 0: as fast as the writer goes


async def write(db: Database, load: Load) -> float:
    """Write the events as a service does; returns how long it took."""
    outbox = Outbox("identity")
    started = time.perf_counter()
    tenants = load.tenants
    for i in range(0, load.events, load.per_tx):
        if load.rate:  # hold the offered load at `rate` events/s
            ahead = i / load.rate - (time.perf_counter() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        batch = [
            new_event(
                MembershipAdded(  # an identity event: identity's NATS user may publish only those
                    tenant_id=tenants[n % len(tenants)], user_id=str(n), role="member"
                ),
                source="saas/bench",
                actor=Actor.user("bench"),
                tenant_id=tenants[n % len(tenants)],
            )
            for n in range(i, min(load.events, i + load.per_tx))
        ]
        async with db.session() as session:
            await outbox.add(session, *batch)
    return time.perf_counter() - started


def admin_database() -> Database:
    """The bench reads and writes as the cluster's administrator (DATABASE_URL)."""
    return Database.from_settings(DatabaseSettings.load(), application_name="bench")


async def run(at: Servers, mode: str, args: argparse.Namespace, *, rate: float = 0.0) -> Result:
    tag = f"b{time.time_ns()}"
    tenants = [f"{tag}-{i}" for i in range(args.tenants)]
    load = Load(tag, args.events, args.per_tx, tenants, rate)
    db = admin_database()
    me = psutil.Process()
    servers = at.server_processes()
    try:
        write_seconds = await write(db, load) if mode == DRAINED else 0.0
        env = {
            "OUTBOX_BATCH_SIZE": str(args.relay_batch),
            "CONSUMER_BATCH_SIZE": str(args.consumer_batch),
        }
        # The consumer first: with a backlog, the relay publishes as soon as it is up.
        async with (
            processes_running(at, ("audit",), **env) as audit,
            processes_running(at, ("identity",), **env) as identity,
        ):
            children = {**audit, **identity}
            procs = {name: psutil.Process(c.process.pid) for name, c in children.items()}
            meter = CpuMeter({"writer": me, **procs, **servers}, trees=("postgres",))
            meter.start()
            wall0 = time.time()
            if mode == ALONGSIDE:
                write_seconds = await write(db, load)
            last = await _wait_for_all(db, load, args.timeout)
            cpu, busy = meter.stop()
            if mode == DRAINED:
                wall0 = await _first_publish(db, tag)
                del cpu["writer"]  # it had finished before the services started
            metrics = {name: _metrics(c.url) for name, c in children.items()}
        result = Result(SIDE, mode, load.events, last - wall0, cpu, busy, meter.load)
        await _check(db, load, result)
        result.details = await _details(db, tag, load, write_seconds, metrics)
        return result
    finally:
        await db.dispose()


async def _wait_for_all(db: Database, load: Load, timeout: float) -> float:
    """The time of the last audit commit, once the audit log holds every event of the run.

    Asks for the heads of the run's chains (each one index lookup), not for a count of the
    rows, so that waiting costs the database next to nothing."""
    query = text(
        "SELECT coalesce(sum(h.tenant_seq), 0), max(h.recorded_at) "
        "FROM unnest(CAST(:keys AS text[])) AS t(key) CROSS JOIN LATERAL ("
        "  SELECT tenant_seq, recorded_at FROM audit.events e WHERE e.tenant_key = t.key"
        "  ORDER BY tenant_seq DESC LIMIT 1) AS h"
    )
    deadline = time.monotonic() + timeout
    while True:
        async with db.session() as session:
            count, last = (await session.execute(query, {"keys": load.tenants})).one()
        if count >= load.events:
            return last.timestamp()
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: only {count} of {load.events} events reached the audit log")
        await asyncio.sleep(0.05)


async def _first_publish(db: Database, tag: str) -> float:
    """When the relay first published (its claim's transaction time, `sent_at`)."""
    query = text(
        "SELECT min(o.sent_at) FROM identity.outbox o JOIN audit.events a USING (event_id) "
        "WHERE a.tenant_key LIKE :p"
    )
    async with db.session() as session:
        return (await session.execute(query, {"p": tag + "-%"})).scalar_one().timestamp()


async def _check(db: Database, load: Load, result: Result) -> None:
    """Every event exactly once, and every tenant's chain intact."""
    query = text(
        "SELECT count(*), count(DISTINCT event_id) FROM audit.events WHERE tenant_key LIKE :p"
    )
    async with db.session() as session:
        rows, distinct = (await session.execute(query, {"p": load.tag + "-%"})).one()
        result.chains_ok = all(
            [(await store.verify(session, t, checkpoints=())).ok for t in load.tenants]
        )
    result.lost, result.duplicated = load.events - distinct, rows - distinct


def _metrics(url: str) -> dict[str, float]:
    body = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    found: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            found[name] = found.get(name, 0.0) + float(line.split()[-1])
    return found


async def _details(
    db: Database, tag: str, load: Load, write_seconds: float, metrics: dict[str, dict[str, float]]
) -> list[str]:
    """Latencies and the processes' own figures, for a run of our side alone."""
    query = text(
        "SELECT extract(epoch FROM a.recorded_at - o.sent_at), "
        "extract(epoch FROM a.recorded_at - a.occurred_at) "
        "FROM audit.events a JOIN identity.outbox o USING (event_id) WHERE a.tenant_key LIKE :p"
    )
    async with db.session() as session:
        timings = (await session.execute(query, {"p": tag + "-%"})).all()
    publish_ms = [max(0.0, float(r[0]) * 1000) for r in timings]
    write_ms = [float(r[1]) * 1000 for r in timings]
    identity, audit = metrics["identity"], metrics["audit"]
    batches = audit.get("saas_consumer_batch_seconds_count", 0.0)
    batch_time = audit.get("saas_consumer_batch_seconds_sum", 0.0)
    return [
        f"writer                   {load.events / write_seconds:,.0f} events/s into the outbox "
        f"({write_seconds:.2f}s), {load.per_tx} per transaction, {len(load.tenants)} tenants",
        f"publish->audit latency   {_percentiles(publish_ms)}",
        f"write->audit latency     {_percentiles(write_ms)}",
        f"relay                    {identity.get('saas_outbox_published_total', 0):.0f} published, "
        f"{identity.get('saas_outbox_publish_failures_total', 0):.0f} failed batches",
        f"audit consumer           {batches:.0f} batches, mean {load.events / max(batches, 1):.0f} "
        f"events and {1000 * batch_time / max(batches, 1):.1f} ms per batch",
    ]


def _percentiles(ms: list[float]) -> str:
    return (
        f"p50 {pct(ms, 0.50):.0f} ms   p95 {pct(ms, 0.95):.0f} ms   "
        f"p99 {pct(ms, 0.99):.0f} ms   max {max(ms):.0f} ms"
    )
