"""Benchmark: events through outbox -> relay -> JetStream -> audit consumer -> audit.events.

Starts an embedded stack (or uses DATABASE_URL / NATS_URL / REDIS_URL / TEMPORAL_HOST), the real
identity process (its outbox relay) and the real audit process (its consumer), then writes N events
into identity's outbox as a service would (in transactions of --per-tx) and waits until the
audit log holds all of them. Prints:

- sustained throughput: N / (first write -> last audit commit), with the writer running alongside
  (`--backlog`: the events are written first and the services started after, so the figure is the
  relay and consumer draining a backlog without the writer competing for the two cores);
- latency p50/p95/p99, publish -> audit commit (the outbox row's sent_at, set in the relay's
  transaction around the publish, to the audit row's transaction time) and write -> audit commit
  (event time, set just before the outbox insert, to the audit row's transaction time);
- where the time goes: CPU seconds of each process, relay and consumer batch figures;
- a zero-loss check: every event id exactly once, every tenant's chain intact.

    .venv/bin/python bench/events.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from saas.audit import store  # noqa: E402
from saas.common.cli import discover_processes  # noqa: E402
from saas.common.commands.migrate import release  # noqa: E402
from saas.common.db import Database  # noqa: E402
from saas.common.db_roles import MIGRATE  # noqa: E402
from saas.common.events import Actor, new_event  # noqa: E402
from saas.common.events.catalogue import MembershipAdded  # noqa: E402
from saas.common.events.outbox import Outbox  # noqa: E402
from saas.common.settings import DatabaseSettings  # noqa: E402
from saas.devstack.database import set_up_logins  # noqa: E402
from saas.devstack.servers import EmbeddedStack, StackPorts, free_port  # noqa: E402
from saas.devstack.supervisor import Supervisor  # noqa: E402


def metric(url: str, name: str) -> float:
    body = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()  # noqa: S310 - loopback
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def write(
    db: Database, outbox: Outbox, total: int, per_tx: int, tenants: list[str], rate: float = 0
) -> float:
    started = time.perf_counter()
    for i in range(0, total, per_tx):
        if rate:  # hold the offered load at `rate` events/s
            ahead = i / rate - (time.perf_counter() - started)
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
            for n in range(i, min(total, i + per_tx))
        ]
        async with db.session() as session:
            await outbox.add(session, *batch)
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    stack = None
    if not all(os.environ.get(v) for v in ("DATABASE_URL", "NATS_URL")):
        stack = EmbeddedStack(
            Path(tempfile.mkdtemp(prefix="bench-")), StackPorts.ephemeral(), temporal_ui=False
        )
        stack.start(only={"postgres", "nats"})
        os.environ.update(
            {k: v for k, v in stack.env().items() if k in ("DATABASE_URL", "NATS_URL")}
        )
    os.environ.setdefault("MIGRATIONS_DIR", str(ROOT / "migrations"))
    # DATABASE_URL is an administrator's: it creates the logins; each process gets its own.
    secrets_root = stack.root if stack else Path(tempfile.mkdtemp(prefix="bench-logins-"))
    logins = await asyncio.to_thread(set_up_logins, os.environ["DATABASE_URL"], secrets_root)
    await asyncio.to_thread(release, lambda _: None, database_url=logins.url(MIGRATE.name))
    specs = [s for s in discover_processes() if s.name in ("identity", "audit")]
    env = {
        "NATS_URL": os.environ["NATS_URL"],
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "OUTBOX_BATCH_SIZE": str(args.relay_batch),
        "CONSUMER_BATCH_SIZE": str(args.consumer_batch),
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
    }
    supervisor = Supervisor(
        env,
        database_urls=logins.urls,
        nats_urls=stack.nats_logins().urls if stack else None,
        log_dir=Path(tempfile.mkdtemp(prefix="bench-logs-")),
    )
    db = Database.from_settings(DatabaseSettings.load())
    tag = f"bench{int(time.time())}"
    tenants = [f"{tag}-{i}" for i in range(args.tenants)]
    try:
        if args.backlog:
            write_seconds = await write(db, Outbox("identity"), args.events, args.per_tx, tenants)
        children = {
            c.spec.name: c for c in supervisor.start(specs, {s.name: free_port() for s in specs})
        }
        supervisor.wait_ready(60)
        procs = {name: psutil.Process(c.process.pid) for name, c in children.items()}
        cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        t0 = time.perf_counter()
        wall0 = time.time()
        if not args.backlog:
            write_seconds = await write(
                db, Outbox("identity"), args.events, args.per_tx, tenants, args.rate
            )
        query = text("SELECT count(*), max(recorded_at) FROM audit.events WHERE tenant_key LIKE :p")
        while True:
            async with db.session() as session:
                count, last = (await session.execute(query, {"p": tag + "-%"})).one()
            if count >= args.events:
                break
            if time.perf_counter() - t0 > args.timeout:
                raise SystemExit(
                    f"FAIL: only {count} of {args.events} events reached the audit log"
                )
            await asyncio.sleep(0.05)
        if args.backlog:  # from the relay's first publish
            async with db.session() as session:
                first = (
                    await session.execute(
                        text(
                            "SELECT min(sent_at) FROM identity.outbox o JOIN audit.events a ON a.event_id = o.event_id "
                            "WHERE a.tenant_key LIKE :p"
                        ),
                        {"p": tag + "-%"},
                    )
                ).scalar_one()
            wall0 = first.timestamp()
        elapsed = last.timestamp() - wall0
        cpu = {name: sum(p.cpu_times()[:2]) - cpu_before[name] for name, p in procs.items()}
        async with db.session() as session:
            timings = (
                await session.execute(
                    text(
                        "SELECT extract(epoch FROM a.recorded_at - o.sent_at), extract(epoch FROM a.recorded_at - a.occurred_at) "
                        "FROM audit.events a JOIN identity.outbox o ON o.event_id = a.event_id WHERE a.tenant_key LIKE :p"
                    ),
                    {"p": tag + "-%"},
                )
            ).all()
            latencies = [r[1] for r in timings]
            publish_ms = [max(0.0, float(r[0]) * 1000) for r in timings]
            distinct = (
                await session.execute(
                    text(
                        "SELECT count(DISTINCT event_id) FROM audit.events WHERE tenant_key LIKE :p"
                    ),
                    {"p": tag + "-%"},
                )
            ).scalar_one()
            chains_ok = all([(await store.verify(session, t, checkpoints=())).ok for t in tenants])
        identity_url, audit_url = children["identity"].url, children["audit"].url
        batches = metric(audit_url, "saas_consumer_batch_seconds_count")
        batch_time = metric(audit_url, "saas_consumer_batch_seconds_sum")
        latencies_ms = [float(v) * 1000 for v in latencies]
        mode = (
            "backlog drained (written before the services started)"
            if args.backlog
            else (
                f"writer alongside at {args.rate:,.0f} events/s offered"
                if args.rate
                else "writer alongside, unthrottled"
            )
        )
        print(
            f"events                   {args.events} over {args.tenants} tenants, {args.per_tx} per transaction; {mode}"
        )
        print(
            f"writer                   {args.events / write_seconds:,.0f} events/s into the outbox ({write_seconds:.2f}s)"
        )
        span = "first publish" if args.backlog else "first write"
        print(
            f"sustained into audit     {args.events / elapsed:,.0f} events/s ({span} -> last audit commit {elapsed:.2f}s)"
        )
        print(
            f"publish->audit latency   p50 {pct(publish_ms, 0.50):.0f} ms   p95 {pct(publish_ms, 0.95):.0f} ms   "
            f"p99 {pct(publish_ms, 0.99):.0f} ms   max {max(publish_ms):.0f} ms"
        )
        print(
            f"write->audit latency     p50 {pct(latencies_ms, 0.50):.0f} ms   p95 {pct(latencies_ms, 0.95):.0f} ms   "
            f"p99 {pct(latencies_ms, 0.99):.0f} ms   max {max(latencies_ms):.0f} ms"
        )
        print(
            f"relay                    {metric(identity_url, 'saas_outbox_published_total'):.0f} published, "
            f"{metric(identity_url, 'saas_outbox_publish_failures_total'):.0f} failed batches"
        )
        print(
            f"audit consumer           {batches:.0f} batches, mean {args.events / max(batches, 1):.0f} events "
            f"and {1000 * batch_time / max(batches, 1):.1f} ms per batch"
        )
        print(
            "cpu seconds              "
            + "   ".join(f"{n} {s:.1f}" for n, s in cpu.items())
            + f"   bench(writer) {sum(psutil.Process().cpu_times()[:2]):.1f}"
        )
        lost, dup = args.events - distinct, len(latencies) - distinct
        verdict = "OK" if lost == 0 and dup == 0 and chains_ok else "FAIL"
        print(
            f"zero-loss check          {verdict}: {distinct} distinct of {args.events}, {lost} lost, {dup} duplicated, "
            f"chains {'intact' if chains_ok else 'BROKEN'}"
        )
        if verdict != "OK":
            raise SystemExit(1)
    finally:
        await db.dispose()
        supervisor.stop()
        if stack:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="outbox -> relay -> JetStream -> audit benchmark")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--per-tx", type=int, default=100, help="events per writer transaction")
    parser.add_argument("--relay-batch", type=int, default=500)
    parser.add_argument("--consumer-batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="offered load in events/s (default: as fast as it goes)",
    )
    parser.add_argument(
        "--backlog", action="store_true", help="write everything first, then start the services"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
