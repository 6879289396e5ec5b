"""The idempotent consumer against real PostgreSQL and a NATS server of the test's own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

import orjson
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from saas.common.db import Database
from saas.common.events import EventEnvelope
from saas.common.events.catalogue import CATALOGUE, EventType, Payload
from saas.common.events.consumer import HEADER_DL_REASON, ConsumerOptions, EventConsumer
from saas.common.events.stream import DEADLETTER_STREAM
from saas.common.settings import DatabaseSettings
from tests.support.events import connect, project_event, scratch_schema

FAST = ConsumerOptions(
    batch_size=50,
    max_deliveries=3,
    backoff=(0.1, 0.2),
    ack_wait=1.0,
    fetch_timeout=0.2,
    pause_max=0.5,
    systemic_pause_max=1.0,
)


@pytest.fixture
async def schema(db) -> str:
    schema = await scratch_schema(db)
    async with db.engine.begin() as conn:
        await conn.execute(
            text(f'CREATE TABLE "{schema}".applied (event_id uuid, tenant text, n int)')
        )
    return schema


def recorder(schema: str, poison: set[str] | None = None):
    """A handler that writes what it applies into the schema's `applied` table."""

    async def handle(session, batch: list[EventEnvelope]) -> None:
        for event in batch:
            if poison and event.id in poison:
                raise ValueError(f"cannot apply {event.id}")
            await session.execute(
                text(f'INSERT INTO "{schema}".applied VALUES (:id, :tenant, :n)'),
                {
                    "id": uuid.UUID(event.id),
                    "tenant": event.tenant_id,
                    "n": int(event.data["project_id"].split(":")[1]),
                },
            )

    return handle


async def applied(db: Database, schema: str) -> list[tuple]:
    async with db.session() as session:
        return [
            tuple(r)
            for r in await session.execute(
                text(f'SELECT event_id, tenant, n FROM "{schema}".applied')
            )
        ]


async def publish(bus, events: list[EventEnvelope]) -> None:
    for e in events:
        await bus.js.publish(e.type, e.to_bytes(), headers={"Nats-Msg-Id": e.id})


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def dead_letters(bus) -> list:
    sub = await bus.js.pull_subscribe("deadletter.>", stream=DEADLETTER_STREAM)
    try:
        return await sub.fetch(100, timeout=1)
    except Exception:
        return []
    finally:
        await sub.unsubscribe()


async def test_events_are_applied_once_even_when_redelivered(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event("ta", n) for n in range(120)]
    await publish(bus, events)
    # The same event ids again under other message ids: past the server's dedupe, as after a long outage.
    for e in events[:30]:
        await bus.js.publish(e.type, e.to_bytes(), headers={"Nats-Msg-Id": f"again-{e.id}"})
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c1", handler=recorder(schema), options=FAST
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "duplicate", 30))
    await consumer.drain()
    rows = await applied(db, schema)
    assert len(rows) == 120
    assert sorted(r[2] for r in rows) == list(range(120))
    await bus.close()


async def _count_outcome(consumer: EventConsumer, outcome: str, n: int) -> bool:
    return consumer.events.labels(consumer.durable, outcome)._value.get() >= n


async def test_poison_event_is_dead_lettered_and_the_rest_go_on(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event("tp", n) for n in range(20)]
    poison = events[7]
    await publish(bus, events)
    consumer = EventConsumer(
        bus=bus,
        db=db,
        schema=schema,
        durable="c2",
        handler=recorder(schema, {poison.id}),
        options=FAST,
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 1))
    await consumer.drain()
    rows = await applied(db, schema)
    assert sorted(r[2] for r in rows) == [n for n in range(20) if n != 7]
    (letter,) = await dead_letters(bus)
    assert letter.headers[HEADER_DL_REASON] == "handler_failed"
    assert "cannot apply" in letter.headers["Saas-Dead-Letter-Detail"]
    assert letter.headers["Saas-Deliveries"] == str(FAST.max_deliveries)
    assert orjson.loads(letter.data)["id"] == poison.id
    await bus.close()


async def test_bad_input_is_dead_lettered_at_once_with_its_reason(db, schema, nats_server):
    bus = await connect(nats_server.url)
    good = project_event("tb", 0)
    doc = orjson.loads(good.to_bytes())
    bad = {
        "invalid_envelope": b"this is not an event",
        "unknown_type": orjson.dumps({**doc, "id": str(uuid.uuid4()), "type": "project.exploded"}),
        "invalid_payload": orjson.dumps({**doc, "id": str(uuid.uuid4()), "data": {"name": 3}}),
        "too_large": orjson.dumps(
            {**doc, "id": str(uuid.uuid4()), "data": {**doc["data"], "name": "x" * 70_000}}
        ),
    }
    for i, body in enumerate(bad.values()):
        await bus.js.publish("project.created", body, headers={"Nats-Msg-Id": f"bad-{i}"})
    await publish(bus, [good])
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c3", handler=recorder(schema), options=FAST
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 4))
    await wait_for(lambda: _count_outcome(consumer, "applied", 1))
    await consumer.drain()
    letters = await dead_letters(bus)
    assert sorted(m.headers[HEADER_DL_REASON] for m in letters) == sorted(bad)
    assert all(
        m.headers["Saas-Deliveries"] == "1" for m in letters
    )  # no retries for what can never succeed
    assert [r[2] for r in await applied(db, schema)] == [0]
    await bus.close()


async def test_consumer_killed_mid_batch_loses_and_duplicates_nothing(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event(f"tk{n % 3}", n) for n in range(300)]
    await publish(bus, events)
    started = asyncio.Event()

    async def slow(session, batch):
        await recorder(schema)(session, batch)
        started.set()
        await asyncio.sleep(10)  # killed while this batch's transaction is open

    first = EventConsumer(bus=bus, db=db, schema=schema, durable="c4", handler=slow, options=FAST)
    await first.start()
    task = first.task
    await started.wait()
    task.cancel()  # the process dies: no commit, no ack
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await applied(db, schema) == []

    second = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c4", handler=recorder(schema), options=FAST
    )
    await second.start()

    async def all_applied() -> bool:
        return len(await applied(db, schema)) >= 300

    await wait_for(all_applied, timeout=30)
    await asyncio.sleep(1.5)  # past ack_wait: anything unacknowledged would come back now
    await second.drain()
    rows = await applied(db, schema)
    assert len(rows) == 300 and len({r[0] for r in rows}) == 300
    await bus.close()


async def test_consumer_carries_on_after_nats_restarts(db, schema, nats_server):
    bus = await connect(nats_server.url)
    await publish(bus, [project_event("tr", n) for n in range(100)])
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c5", handler=recorder(schema), options=FAST
    )
    await consumer.start()

    async def count_at_least(n: int):
        async def check() -> bool:
            return len(await applied(db, schema)) >= n

        return check

    await wait_for(await count_at_least(100))
    nats_server.stop()
    await asyncio.sleep(1.0)
    nats_server.start()
    await wait_for(lambda: _connected(bus), timeout=20)
    await publish(bus, [project_event("tr", n) for n in range(100, 200)])
    await wait_for(await count_at_least(200), timeout=30)
    await consumer.drain()
    rows = await applied(db, schema)
    assert sorted(r[2] for r in rows) == list(range(200))
    await bus.close()


async def _connected(bus) -> bool:
    return bus.is_connected


async def test_processed_ids_older_than_the_stream_keeps_events_are_pruned(db, schema, nats_server):
    bus = await connect(nats_server.url)
    options = ConsumerOptions(processed_retention=3600)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c6", handler=recorder(schema), options=options
    )
    async with db.session() as session:
        await session.execute(
            text(
                f'INSERT INTO "{schema}".processed_events (consumer, event_id, processed_at) VALUES '
                "('c6', gen_random_uuid(), now() - interval '2 hours'), ('c6', gen_random_uuid(), now()), "
                "('other', gen_random_uuid(), now() - interval '2 hours')"
            )
        )
    await consumer.prune_processed()
    async with db.session() as session:
        left = (
            (
                await session.execute(
                    text(f'SELECT consumer FROM "{schema}".processed_events ORDER BY 1')
                )
            )
            .scalars()
            .all()
        )
    assert left == ["c6", "other"]
    await bus.close()


def _saas(nats_url: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "events", "dead-letters", *args],
        env={**os.environ, "NATS_URL": nats_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_dead_letters_are_listed_and_replayed_once_fixed(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event("tl", n) for n in range(5)]
    broken = {events[2].id}
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c7", handler=recorder(schema, broken), options=FAST
    )
    await consumer.start()
    await publish(bus, events)
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 1))

    listing = await asyncio.to_thread(_saas, nats_server.url, "list", "--consumer", "c7")
    assert "handler_failed" in listing and "project.created" in listing and "c7" in listing
    assert f"failures={FAST.max_deliveries}" in listing
    assert "no dead letters" in await asyncio.to_thread(
        _saas, nats_server.url, "list", "--consumer", "other"
    )

    broken.clear()  # the cause is fixed
    replayed = await asyncio.to_thread(_saas, nats_server.url, "replay", "--consumer", "c7")
    assert "replayed 1" in replayed
    await wait_for(lambda: _count_outcome(consumer, "applied", 5))
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == [0, 1, 2, 3, 4]
    assert "no dead letters" in await asyncio.to_thread(_saas, nats_server.url, "list")
    await bus.close()


async def test_an_outage_pauses_the_consumer_and_dead_letters_nothing(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event("to", n) for n in range(30)]
    outage = {"calls": 0}
    apply = recorder(schema)

    async def flaky(session, batch):
        outage["calls"] += 1
        if outage["calls"] <= 8:  # more attempts than max_deliveries allows for a handler fault
            raise ConnectionRefusedError("database is restarting")
        await apply(session, batch)

    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c8", handler=flaky, options=FAST
    )
    await consumer.start()
    await publish(bus, events)

    async def all_applied() -> bool:
        return len(await applied(db, schema)) == 30

    await wait_for(all_applied, timeout=60)
    await consumer.drain()
    assert outage["calls"] > 8
    assert consumer.events.labels("c8", "dead_lettered")._value.get() == 0
    assert await dead_letters(bus) == []
    await bus.close()


async def test_an_event_with_a_nul_character_is_dead_lettered_and_the_rest_are_applied(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    before, after = project_event("tn", 0), [project_event("tn", n) for n in (1, 2)]
    doc = orjson.loads(before.to_bytes())
    nul = {**doc, "id": str(uuid.uuid4()), "data": {**doc["data"], "name": "evil\x00name"}}
    await publish(bus, [before])
    await bus.js.publish("project.created", orjson.dumps(nul), headers={"Nats-Msg-Id": nul["id"]})
    await publish(bus, after)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c9", handler=recorder(schema), options=FAST
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "applied", 3))
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == [0, 1, 2]
    (letter,) = await dead_letters(bus)
    assert letter.headers[HEADER_DL_REASON] == "invalid_envelope"
    assert orjson.loads(letter.data)["id"] == nul["id"]
    await bus.close()


class ProjectCreatedV2(Payload):
    tenant_id: str
    project_id: str
    name: str
    description: str


class ProjectCreatedV3(ProjectCreatedV2):
    colour: str


def _v1_to_v2(data: dict) -> dict:
    return {**data, "description": ""}


def _v2_to_v3(data: dict) -> dict:
    return {**data, "colour": "grey"}


def _reader_of(version: int, model, upcasters: dict) -> EventType:
    """`project.created` as code that reads `version` declares it."""
    return EventType("project.created", version, model, "tenancy", "A project.", upcasters)


async def test_in_a_rolling_deploy_old_events_are_upcast_and_newer_ones_wait_for_newer_code(
    db, schema, nats_server, monkeypatch
):
    bus = await connect(nats_server.url)
    v1 = [project_event("tv", n) for n in (0, 1, 3)]  # written by code still on version 1
    doc = orjson.loads(project_event("tv", 2).to_bytes())
    v3 = {**doc, "dataversion": 3, "data": {**doc["data"], "description": "d", "colour": "red"}}
    seen: list[tuple[int, int]] = []
    apply = recorder(schema)

    async def handler(session, batch):
        seen.extend((int(e.data["project_id"].split(":")[1]), e.dataversion) for e in batch)
        await apply(session, batch)

    monkeypatch.setitem(
        CATALOGUE, "project.created", _reader_of(2, ProjectCreatedV2, {1: _v1_to_v2})
    )
    await publish(bus, v1[:2])
    await bus.js.publish("project.created", orjson.dumps(v3), headers={"Nats-Msg-Id": v3["id"]})
    await publish(bus, v1[2:])
    options = replace(FAST, defer_delay=0.3)
    on_v2 = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c10", handler=handler, options=options
    )
    await on_v2.start()
    await wait_for(lambda: _count_outcome(on_v2, "applied", 3))
    await wait_for(lambda: _count_outcome(on_v2, "deferred", 2))  # handed back, and again
    await on_v2.drain()
    assert sorted(seen) == [(0, 2), (1, 2), (3, 2)]

    monkeypatch.setitem(
        CATALOGUE,
        "project.created",
        _reader_of(3, ProjectCreatedV3, {1: _v1_to_v2, 2: _v2_to_v3}),
    )
    on_v3 = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c10", handler=handler, options=options
    )
    await on_v3.start()
    await wait_for(lambda: _count_outcome(on_v3, "applied", 1))
    await on_v3.drain()
    assert sorted(seen) == [(0, 2), (1, 2), (2, 3), (3, 2)]
    assert sorted(r[2] for r in await applied(db, schema)) == [0, 1, 2, 3]
    assert await dead_letters(bus) == []
    await bus.close()


async def failure_counts(db: Database, schema: str) -> dict[str, tuple[int, str]]:
    async with db.session() as session:
        rows = await session.execute(
            text(f'SELECT event_id, failures, last_error FROM "{schema}".consumer_failures')
        )
        return {str(r[0]): (r[1], r[2]) for r in rows}


async def test_outage_redeliveries_never_count_towards_dead_lettering(db, schema, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event("tf", n) for n in range(10)]
    poison = events[4]
    calls = {"outage": 0, "poison": 0}
    apply = recorder(schema, {poison.id})

    async def handler(session, batch):
        if calls["outage"] < 8:  # the database is away for longer than max_deliveries allows
            calls["outage"] += 1
            raise ConnectionRefusedError("database is restarting")
        calls["poison"] += any(e.id == poison.id for e in batch)
        await apply(session, batch)

    await publish(bus, events)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c11", handler=handler, options=FAST
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 1), timeout=30)
    await consumer.drain()
    (letter,) = await dead_letters(bus)
    assert orjson.loads(letter.data)["id"] == poison.id
    assert int(letter.headers["Saas-Deliveries"]) > FAST.max_deliveries  # outages redelivered it
    # Its first real failure came in a batch (then alone): each event failure counted once.
    assert calls["poison"] == FAST.max_deliveries + 1
    assert letter.headers["Saas-Failures"] == str(FAST.max_deliveries)
    assert sorted(r[2] for r in await applied(db, schema)) == [n for n in range(10) if n != 4]
    assert await failure_counts(db, schema) == {}
    await bus.close()


async def test_failures_are_counted_in_the_database_across_replicas_and_forgotten_once_applied(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("tc", n) for n in range(5)]
    flaky = events[2]
    broken = {flaky.id}
    failed_twice = asyncio.Event()
    failures = {"n": 0}
    apply = recorder(schema, broken)

    async def handler(session, batch):
        try:
            await apply(session, batch)
        except ValueError:
            failures["n"] += len(batch) == 1  # the event alone, after its batch failed
            if failures["n"] == 2:
                failed_twice.set()
            raise

    options = replace(FAST, backoff=(0.5,))
    first = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c12", handler=handler, options=options
    )
    await first.start()
    await publish(bus, events)
    await asyncio.wait_for(failed_twice.wait(), 15)
    await first.drain()
    ((count, last_error),) = (await failure_counts(db, schema)).values()
    assert count == 2 and "cannot apply" in last_error

    broken.clear()  # fixed; another replica takes over
    second = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c12", handler=handler, options=options
    )
    await second.start()
    await wait_for(lambda: _count_outcome(second, "applied", 1))
    await second.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == [0, 1, 2, 3, 4]
    assert await failure_counts(db, schema) == {}
    await bus.close()


async def test_the_audit_role_may_count_and_forget_failures_in_its_schema(stack, nats_server):
    writer = Database.from_settings(DatabaseSettings.load(database_role="audit_writer"))
    bus = await connect(nats_server.url)
    events = [project_event("tw", n) for n in range(4)]
    poison = events[1]

    async def handler(session, batch):
        if any(e.id == poison.id for e in batch):
            raise ValueError("cannot audit this")

    durable = f"audit-role-{uuid.uuid4().hex[:6]}"
    consumer = EventConsumer(
        bus=bus, db=writer, schema="audit", durable=durable, handler=handler, options=FAST
    )
    await consumer.start()
    await publish(bus, events)
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 1))
    await wait_for(lambda: _count_outcome(consumer, "applied", 3))
    await consumer.drain()
    async with writer.session() as session:
        left = await session.execute(
            text("SELECT count(*) FROM audit.consumer_failures WHERE consumer = :c"), {"c": durable}
        )
        assert left.scalar_one() == 0
    await writer.dispose()
    await bus.close()


async def test_when_every_event_fails_the_same_way_the_consumer_pauses_instead_of_dead_lettering(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("ts", n) for n in range(20)]
    # A migration that did not run: the handler's table is missing, for every event alike.
    target = {"table": "applied_by_a_migration_that_did_not_run"}

    async def handler(session, batch):
        for e in batch:
            await session.execute(
                text(f'INSERT INTO "{schema}".{target["table"]} VALUES (:id, :tenant, :n)'),
                {
                    "id": uuid.UUID(e.id),
                    "tenant": e.tenant_id,
                    "n": int(e.data["project_id"].split(":")[1]),
                },
            )

    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c14", handler=handler, options=FAST
    )
    with capture_logs() as logs:
        await consumer.start()
        await publish(bus, events)
        await asyncio.sleep(3)  # many times what dead-lettering all of them would take
        assert _value(consumer.events, "c14", "dead_lettered") == 0
        assert await dead_letters(bus) == []
        assert _value(consumer.paused, "c14", "42P01") == 1
        # The failures before the fault was recognised as systemic are taken back too.
        assert {count for count, _ in (await failure_counts(db, schema)).values()} <= {0}
        target["table"] = "applied"  # the migration ran
        await wait_for(lambda: _count_outcome(consumer, "applied", 20), timeout=30)
        assert _value(consumer.paused, "c14", "42P01") == 0
        await consumer.drain()
    pauses = [line for line in logs if line["log_level"] == "error"]
    assert [line["event"] for line in pauses] == [
        "consumer paused: events keep failing the same way"
    ]
    assert pauses[0]["reason"] == "42P01"
    assert sorted(r[2] for r in await applied(db, schema)) == list(range(20))
    assert await failure_counts(db, schema) == {}
    await bus.close()


def _value(metric, *labels: str) -> float:
    return metric.labels(*labels)._value.get()


async def test_distinct_events_failing_the_same_way_among_good_ones_are_still_dead_lettered(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("tg", n) for n in range(12)]
    poison = {events[n].id for n in (2, 5, 8)}  # the same bug, each time between good events
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c15", handler=recorder(schema, poison), options=FAST
    )
    await consumer.start()
    await publish(bus, events)
    await wait_for(lambda: _count_outcome(consumer, "dead_lettered", 3), timeout=30)
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == [
        n for n in range(12) if n not in (2, 5, 8)
    ]
    assert {orjson.loads(m.data)["id"] for m in await dead_letters(bus)} == poison
    await bus.close()


async def test_a_deleted_durable_is_recreated_and_the_consumer_carries_on(db, schema, nats_server):
    bus = await connect(nats_server.url)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c16", handler=recorder(schema), options=FAST
    )
    await consumer.start()
    await publish(bus, [project_event("td", n) for n in range(10)])
    await wait_for(lambda: _count_outcome(consumer, "applied", 10))
    await bus.js.delete_consumer("EVENTS", "c16")  # by an operator, or a stream restored
    await publish(bus, [project_event("td", n) for n in range(10, 20)])
    await wait_for(lambda: _count_outcome(consumer, "applied", 20), timeout=20)
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == list(range(20))
    await bus.close()


async def test_lag_that_cannot_be_measured_is_counted_and_a_missing_durable_recreated(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c17", handler=recorder(schema), options=FAST
    )
    await consumer.subscribe()
    await bus.js.delete_consumer("EVENTS", "c17")
    await consumer.measure_lag()
    assert _value(consumer.lag_errors, "c17") == 1
    assert (await bus.js.consumer_info("EVENTS", "c17")).config.durable_name == "c17"
    await consumer.measure_lag()
    assert _value(consumer.lag_errors, "c17") == 1
    await bus.close()


async def test_events_pending_with_nothing_acknowledged_show_as_stalled(db, schema, nats_server):
    bus = await connect(nats_server.url)
    consumer = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c18", handler=recorder(schema), options=FAST
    )
    await consumer.subscribe()  # declared, never started: nothing will be acknowledged
    await consumer.measure_lag()
    assert _value(consumer.stalled, "c18") == 0  # nothing pending: nothing stalled
    await publish(bus, [project_event("ts", n) for n in range(3)])
    await asyncio.sleep(1.2)
    await consumer.measure_lag()
    assert _value(consumer.stalled, "c18") >= 1
    await bus.close()


async def test_at_drain_events_received_but_not_yet_processed_go_to_another_replica_at_once(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("tq", n) for n in range(30)]
    in_handler, release = asyncio.Event(), asyncio.Event()
    apply = recorder(schema)

    async def held(session, batch):
        in_handler.set()
        await release.wait()
        await apply(session, batch)

    # A long ack wait: what the draining replica kept would otherwise wait that long.
    options = replace(FAST, batch_size=10, ack_wait=30.0, fetch_timeout=5.0)
    first = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c18", handler=held, options=options
    )
    await first.start()
    await asyncio.sleep(0.3)  # idle: a long poll is open
    await publish(bus, events)
    await in_handler.wait()
    await asyncio.sleep(0.3)  # the rest of the long poll's messages arrive meanwhile
    assert first._puller is not None and first._puller.buffered > 0
    draining = asyncio.create_task(first.drain())
    release.set()
    await draining

    second = EventConsumer(
        bus=bus, db=db, schema=schema, durable="c18", handler=recorder(schema), options=options
    )
    await second.start()

    async def all_applied() -> bool:
        return len(await applied(db, schema)) == 30

    await wait_for(all_applied, timeout=10)
    await second.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == list(range(30))
    await bus.close()


def logging_recorder(schema: str, poison: set[str] | None = None):
    """A handler whose own table records what it applied, as the audit log does: it skips events
    already there and returns those it applied."""
    apply = recorder(schema, poison)

    async def handle(session, batch: list[EventEnvelope]) -> list[EventEnvelope]:
        logged = await session.execute(
            text(f'SELECT event_id FROM "{schema}".applied WHERE event_id = ANY(:ids)'),
            {"ids": [uuid.UUID(e.id) for e in batch]},
        )
        known = {str(r[0]) for r in logged}
        fresh = [e for e in batch if e.id not in known]
        await apply(session, fresh)
        return fresh

    return handle


async def processed_ids(db: Database, schema: str, durable: str) -> int:
    async with db.session() as session:
        found = await session.execute(
            text(f'SELECT count(*) FROM "{schema}".processed_events WHERE consumer = :c'),
            {"c": durable},
        )
        return found.scalar_one()


async def test_a_handler_that_records_what_it_applied_applies_each_event_once_without_a_second_record(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("tr", n) for n in range(60)]
    await publish(bus, events)
    for e in events[:20]:  # again, past the server's dedupe
        await bus.js.publish(e.type, e.to_bytes(), headers={"Nats-Msg-Id": f"again-{e.id}"})
    consumer = EventConsumer(
        bus=bus,
        db=db,
        schema=schema,
        durable="c20",
        handler=logging_recorder(schema),
        options=FAST,
        handler_records_ids=True,
    )
    await consumer.start()
    await wait_for(lambda: _count_outcome(consumer, "duplicate", 20))
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == list(range(60))
    assert _value(consumer.events, "c20", "applied") == 60
    assert await processed_ids(db, schema, "c20") == 0
    await bus.close()


async def test_a_handler_that_records_what_it_applied_has_failures_forgotten_once_applied(
    db, schema, nats_server
):
    bus = await connect(nats_server.url)
    events = [project_event("tf", n) for n in range(5)]
    broken = {events[3].id}
    options = replace(FAST, backoff=(0.3,))
    consumer = EventConsumer(
        bus=bus,
        db=db,
        schema=schema,
        durable="c21",
        handler=logging_recorder(schema, broken),
        options=options,
        handler_records_ids=True,
    )
    await consumer.start()
    await publish(bus, events)
    await wait_for(lambda: _count_outcome(consumer, "retried", 1))
    assert len(await failure_counts(db, schema)) == 1
    broken.clear()  # fixed: its next delivery applies it
    await wait_for(lambda: _count_outcome(consumer, "applied", 5))
    await consumer.drain()
    assert sorted(r[2] for r in await applied(db, schema)) == [0, 1, 2, 3, 4]
    assert await failure_counts(db, schema) == {}
    await bus.close()
