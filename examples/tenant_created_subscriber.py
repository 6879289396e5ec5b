"""An example of another team's service consuming `tenant.created` durably.

It owns its consumer (`--consumer`, default `billing-tenant-created`) on the `EVENTS` stream,
filtered on `tenant.created`, and keeps its own state in SQLite. For each event, in one SQLite
transaction, it records the event id and applies the effect (here: opens a billing account for
the tenant); only after that commit does it acknowledge. So it can be stopped or killed at any
moment and restarted: nothing is missed (unacknowledged events come back) and nothing is applied
twice (a redelivered id is already recorded).

    NATS_URL=nats://127.0.0.1:14222 python examples/tenant_created_subscriber.py --state billing.db

Needs `nats-py` and, for the typed contract, `saas-common` (`saas.common.events`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from saas.common.events import InvalidEvent, NewerVersion, parse_event
from saas.common.events.catalogue import TenantCreated

STREAM = "EVENTS"
SUBJECT = "tenant.created"


def open_state(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS processed (event_id TEXT PRIMARY KEY)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS accounts (tenant_id TEXT PRIMARY KEY, slug TEXT NOT NULL, opened_at TEXT NOT NULL)"
    )
    return conn


def apply_once(conn: sqlite3.Connection, event_id: str, tenant: TenantCreated, when: str) -> bool:
    """Record the event and apply its effect in one transaction; False if it was already applied."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        fresh = (
            conn.execute("INSERT OR IGNORE INTO processed VALUES (?)", (event_id,)).rowcount == 1
        )
        if fresh:
            conn.execute(
                "INSERT OR IGNORE INTO accounts VALUES (?, ?, ?)",
                (tenant.tenant_id, tenant.slug, when),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return fresh


async def run(nats_url: str, consumer: str, state: Path) -> None:
    conn = open_state(state)
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1)
    js = nc.jetstream()
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=consumer,
            filter_subject=SUBJECT,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,  # a new consumer starts from the first tenant
            ack_wait=30,
            max_deliver=10,
        ),
    )
    sub = await js.pull_subscribe_bind(durable=consumer, stream=STREAM)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"consuming {SUBJECT} as {consumer}", flush=True)
    while not stop.is_set():
        try:
            msgs = await sub.fetch(50, timeout=1)
        except TimeoutError:  # nats-py raises its own subclass or, at times, asyncio's own
            continue
        for msg in msgs:
            try:
                event = parse_event(msg.data)
            except NewerVersion:
                await msg.nak(delay=60)  # written by newer code: upgrade saas-common to read it
                continue
            except InvalidEvent as exc:
                print(f"skipping invalid event: {exc.reason}: {exc}", flush=True)
                await msg.term()
                continue
            tenant = TenantCreated.model_validate(event.data)
            if apply_once(conn, event.id, tenant, event.time.isoformat()):
                print(f"opened account for {tenant.slug} ({tenant.tenant_id})", flush=True)
            await msg.ack()  # after the commit above, never before
    await nc.close()  # everything fetched was acknowledged above
    conn.close()
    print("stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:14222"))
    parser.add_argument("--consumer", default="billing-tenant-created")
    parser.add_argument("--state", type=Path, default=Path("billing.db"))
    args = parser.parse_args()
    asyncio.run(run(args.nats_url, args.consumer, args.state))


if __name__ == "__main__":
    main()
