"""FastStream's side of the events benchmark, on the same servers as ours.

The publisher (in the bench process, as our writer is) builds the same events as our writer
(`new_event`, the same bytes) and publishes them with FastStream to a stream of its own, a copy of
EVENTS' configuration (file storage, the same duplicate window, `Nats-Msg-Id` = event id), 100
publishes in flight at a time, each awaiting its JetStream ack. The consumer is
`bench/faststream_app.py`, a process of its own connected as the `ops` NATS user and as the
database's administrator, writing to a table of its own. The run ends when the table holds every
event, and checks that each is there exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import nats
import psutil
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import text

from bench.faststream_app import SCHEMA, events_table
from bench.harness import ROOT, Servers
from bench.measure import DRAINED, CpuMeter, Result
from bench.pipeline import admin_database
from saas.common.db import Database
from saas.common.events import Actor, new_event
from saas.common.events.catalogue import MembershipAdded
from saas.common.events.stream import events_config
from saas.common.settings import EventSettings
from saas.devstack.servers.base import die_with_parent

IDIOMS = {"batch": "FastStream batch", "message": "FastStream per message"}
IN_FLIGHT = 100  # publishes awaiting their ack at once, as our writer writes 100 per transaction


@dataclasses.dataclass(frozen=True)
class Names:
    stream: str
    subject: str
    durable: str
    table: str

    @classmethod
    def fresh(cls) -> Names:
        n = time.time_ns()
        return cls(f"FSBENCH_{n}", f"fsbench.{n}.membership.added", "fsbench", f"events_{n}")


async def publish(broker: NatsBroker, names: Names, events: int, tenants: int) -> float:
    """Publish the events; returns how long it took."""
    started = time.perf_counter()
    for i in range(0, events, IN_FLIGHT):
        batch = [
            new_event(
                MembershipAdded(tenant_id=f"t{n % tenants}", user_id=str(n), role="member"),
                source="saas/bench",
                actor=Actor.user("bench"),
                tenant_id=f"t{n % tenants}",
            )
            for n in range(i, min(events, i + IN_FLIGHT))
        ]
        await asyncio.gather(
            *(
                broker.publish(
                    e.to_bytes(),
                    names.subject,
                    headers={"Nats-Msg-Id": e.id},
                    stream=names.stream,
                    timeout=10,
                )
                for e in batch
            )
        )
    return time.perf_counter() - started


async def run(at: Servers, idiom: str, mode: str, args: argparse.Namespace) -> Result:
    names = Names.fresh()
    db = admin_database()
    nc = await nats.connect(at.nats_url)
    broker = NatsBroker(at.nats_url)
    try:
        js = nc.jetstream()
        await _create(db, js, names)
        await broker.connect()
        if mode == DRAINED:
            await publish(broker, names, args.events, args.tenants)
        with _consumer(at, idiom, names) as app:
            meter = CpuMeter(
                {"writer": psutil.Process(), "faststream": app, **at.server_processes()},
                trees=("postgres",),
            )
            started = await _consumer_created(js, names)
            meter.start()
            if mode != DRAINED:
                started = time.time()
                await publish(broker, names, args.events, args.tenants)
            last = await _wait_for_all(db, js, names, args.events, args.timeout)
            cpu, busy = meter.stop()
        if mode == DRAINED:
            del cpu["writer"]  # it had finished before the consumer started
        result = Result(IDIOMS[idiom], mode, args.events, last - started, cpu, busy, meter.load)
        await _check(db, names, result)
        return result
    finally:
        await broker.stop()
        await _drop(db, nc.jetstream(), names)
        await nc.close()
        await db.dispose()


async def _create(db: Database, js: JetStreamContext, names: Names) -> None:
    config = dataclasses.replace(
        events_config(EventSettings.load()), name=names.stream, subjects=[names.subject]
    )
    config.description = "FastStream's side of bench/events.py"
    await js.add_stream(config)
    async with db.engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        await connection.run_sync(events_table(names.table).create)


async def _drop(db: Database, js: JetStreamContext, names: Names) -> None:
    try:
        await js.delete_stream(names.stream)
    except NotFoundError:
        pass
    async with db.engine.begin() as connection:
        await connection.run_sync(events_table(names.table).drop, checkfirst=True)


@contextmanager
def _consumer(at: Servers, idiom: str, names: Names) -> Iterator[psutil.Process]:
    """bench/faststream_app.py as a process of its own, stopped (SIGTERM) when the block ends."""
    env = {
        **os.environ,
        "NATS_URL": at.nats_url,
        "DATABASE_URL": at.logins.admin_url,
        "FS_IDIOM": idiom,
        "FS_STREAM": names.stream,
        "FS_SUBJECT": names.subject,
        "FS_DURABLE": names.durable,
        "FS_TABLE": names.table,
        "PYTHONPATH": str(ROOT),
    }
    log = at.folder / "logs" / f"faststream-{idiom}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "faststream_app.py")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
    try:
        yield psutil.Process(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def _consumer_created(js: JetStreamContext, names: Names, timeout: float = 60) -> float:
    """When FastStream created its durable (the server's clock: this machine's)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await js.consumer_info(names.stream, names.durable)
            return info.created.timestamp()
        except NotFoundError:
            if time.monotonic() > deadline:
                raise SystemExit("FAIL: the FastStream consumer did not start") from None
            await asyncio.sleep(0.02)


async def _wait_for_all(
    db: Database, js: JetStreamContext, names: Names, events: int, timeout: float
) -> float:
    """The time of the last commit, once FastStream has acknowledged every event (it does so
    after its transaction commits). Asks JetStream, so that waiting costs the database nothing."""
    deadline = time.monotonic() + timeout
    while True:
        info = await js.consumer_info(names.stream, names.durable)
        if info.ack_floor is not None and info.ack_floor.stream_seq >= events:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: FastStream acknowledged only {info.ack_floor} of {events}")
        await asyncio.sleep(0.05)
    query = text(f"SELECT max(recorded_at) FROM {SCHEMA}.{names.table}")  # noqa: S608 - ours
    async with db.session() as session:
        return (await session.execute(query)).scalar_one().timestamp()


async def _check(db: Database, names: Names, result: Result) -> None:
    table = f"{SCHEMA}.{names.table}"
    query = text(f"SELECT count(*), count(DISTINCT event_id) FROM {table}")  # noqa: S608
    async with db.session() as session:
        rows, distinct = (await session.execute(query)).one()
    result.lost, result.duplicated = result.events - distinct, rows - distinct
