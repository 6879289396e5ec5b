"""The outbox relay against real PostgreSQL and a NATS server of the test's own."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from saas.common.events.outbox import Outbox
from saas.common.events.relay import OutboxRelay
from saas.common.metrics import Metrics
from tests.support.events import (
    assert_in_order_per_tenant,
    connect,
    project_event,
    read_stream,
    scratch_schema,
    unsent,
    write_events,
)


@pytest.fixture
async def outbox(db) -> Outbox:
    return Outbox(await scratch_schema(db))


async def ids_left(db, outbox: Outbox) -> list[str]:
    """The event ids still in the outbox, oldest first."""
    async with db.session() as session:
        rows = await session.execute(
            text(f'SELECT event_id::text FROM "{outbox.schema}".outbox ORDER BY seq')  # noqa: S608
        )
        return list(rows.scalars())


async def test_relay_publishes_in_order_and_deletes_what_was_acknowledged(db, outbox, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event(t, n) for n in range(30) for t in ("ta", "tb")]
    await write_events(db, outbox, events)
    metrics = Metrics()
    relay = OutboxRelay(db, bus, outbox.schema, metrics=metrics, batch_size=25)
    pending, oldest_age = await relay.measure_lag()
    assert pending == 60 and oldest_age > 0
    while await relay.relay_once():
        pass
    stream = await read_stream(bus)
    assert [e.id for e in stream] == [e.id for e in events]
    assert await unsent(db, outbox) == 0  # the stream is the record of what was published
    assert (await relay.measure_lag())[0] == 0
    await bus.close()


async def test_rows_are_deleted_only_once_jetstream_has_acknowledged_them(
    db, outbox, nats_server, monkeypatch
):
    bus = await connect(nats_server.url)
    events = [project_event("tk", n) for n in range(10)]
    await write_events(db, outbox, events)
    relay = OutboxRelay(db, bus, outbox.schema, publish_timeout=1.0, max_attempts=1)
    real_publish_batch = bus.js.publish_batch

    async def acks_for_the_first_four(messages, **kwargs):  # the rest time out
        answers = await real_publish_batch(messages[:4], **kwargs)
        return [*answers, *[TimeoutError()] * (len(messages) - 4)]

    monkeypatch.setattr(bus.js, "publish_batch", acks_for_the_first_four)
    assert await relay.relay_once() == 4
    assert await ids_left(db, outbox) == [e.id for e in events[4:]]
    monkeypatch.undo()

    nats_server.stop()  # JetStream away: nothing is acknowledged, nothing is deleted
    deadline = time.monotonic() + 10
    while bus.nc.is_connected:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for _ in range(2):
        assert await relay.relay_once() == 0
    assert await ids_left(db, outbox) == [e.id for e in events[4:]]
    nats_server.start()
    deadline = time.monotonic() + 30
    while not await relay.relay_once():
        assert time.monotonic() < deadline, "relay did not publish after NATS came back"
        await asyncio.sleep(0.2)
    assert await ids_left(db, outbox) == []
    assert [e.id for e in await read_stream(bus)] == [e.id for e in events]
    await bus.close()


async def test_crash_between_publish_and_delete_is_deduplicated_by_the_server(
    db, outbox, nats_server, monkeypatch
):
    bus = await connect(nats_server.url)
    events = [project_event("tc", n) for n in range(40)]
    await write_events(db, outbox, events)
    relay = OutboxRelay(db, bus, outbox.schema)
    real_publish = relay._publish

    async def publish_then_crash(rows):
        await real_publish(rows)
        raise RuntimeError("relay died after JetStream acknowledged, before deleting the rows")

    monkeypatch.setattr(relay, "_publish", publish_then_crash)
    with pytest.raises(RuntimeError):
        await relay.relay_once()
    assert await unsent(db, outbox) == 40  # the delete never happened
    monkeypatch.undo()
    assert await relay.relay_once() == 40  # published again...
    stream = await read_stream(bus)
    assert len(stream) == 40  # ...but the stream holds each event once
    assert [e.id for e in stream] == [e.id for e in events]
    await bus.close()


async def test_notify_wakes_the_relay_without_waiting_for_the_poll(db, outbox, nats_server):
    bus = await connect(nats_server.url)
    relay = OutboxRelay(db, bus, outbox.schema, poll_interval=30.0)
    await relay.start()
    await asyncio.sleep(0.5)  # let it LISTEN and go to sleep
    started = time.monotonic()
    await write_events(db, outbox, [project_event("td", 0)])
    while await unsent(db, outbox) or not await read_stream(bus):
        assert time.monotonic() - started < 5, "relay did not wake on NOTIFY"
        await asyncio.sleep(0.05)
    await relay.stop()
    await bus.close()


async def test_two_replicas_publish_each_event_once_in_order_per_tenant(db, outbox, nats_server):
    buses = [await connect(nats_server.url, f"relay{i}") for i in range(2)]
    events = [project_event(f"tenant{n % 5}", n) for n in range(1000)]
    relays = [OutboxRelay(db, b, outbox.schema, batch_size=50, poll_interval=0.05) for b in buses]
    for r in relays:
        await r.start()
    await write_events(db, outbox, events, per_tx=20)
    deadline = time.monotonic() + 30
    while await unsent(db, outbox):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    for r in relays:
        await r.stop()
    published = [r.published.labels(outbox.schema)._value.get() for r in relays]
    stream = await read_stream(buses[0])
    assert len(stream) == 1000 and {e.id for e in stream} == {e.id for e in events}
    assert_in_order_per_tenant(stream)
    assert sum(published) == 1000
    for b in buses:
        await b.close()


async def test_nats_outage_loses_nothing_and_keeps_order_per_tenant(db, outbox, nats_server):
    bus = await connect(nats_server.url)
    # One attempt is all a row gets: an outage misjudged as a row's fault would quarantine it.
    relay = OutboxRelay(
        db,
        bus,
        outbox.schema,
        batch_size=100,
        poll_interval=0.1,
        publish_timeout=2.0,
        max_attempts=1,
    )
    await relay.start()
    n = 0

    async def write(count: int) -> None:
        nonlocal n
        for _ in range(count):
            await write_events(db, outbox, [project_event(f"out{n % 3}", n)])
            n += 1

    await write(50)
    nats_server.stop()  # services keep writing while NATS is down
    await write(150)
    await asyncio.sleep(3.0)  # longer than the relay's publish timeout
    assert await unsent(db, outbox) > 0
    nats_server.start()
    await write(50)
    deadline = time.monotonic() + 30
    while await unsent(db, outbox):
        assert time.monotonic() < deadline, "relay did not catch up after NATS came back"
        await asyncio.sleep(0.1)
    await relay.stop()
    stream = await read_stream(bus, "out")
    assert len(stream) == 250
    assert len({e.id for e in stream}) == 250
    assert_in_order_per_tenant(stream)
    assert relay.failures.labels(outbox.schema)._value.get() > 0  # it did notice the outage
    async with db.session() as session:
        counted = await session.execute(
            text(f'SELECT count(*) FROM "{outbox.schema}".outbox WHERE attempts > 0')  # noqa: S608
        )
        assert counted.scalar_one() == 0  # the outage was nobody's fault
    await bus.close()


async def test_many_batches_reuse_one_ack_subscription_and_leak_no_task(db, outbox, nats_server):
    bus = await connect(nats_server.url)
    relay = OutboxRelay(db, bus, outbox.schema, batch_size=5)
    await write_events(db, outbox, [project_event("tl", 0)])
    assert await relay.relay_once() == 1  # the first batch sets up what every batch shares
    subscriptions, tasks = len(bus.nc._subs), len(asyncio.all_tasks())
    await write_events(db, outbox, [project_event(f"tl{n % 3}", n) for n in range(1, 301)])
    batches = 0
    while await relay.relay_once():
        batches += 1
    assert batches == 60
    assert len(bus.nc._subs) == subscriptions
    assert len(asyncio.all_tasks()) == tasks
    await bus.close()


async def test_stop_publishes_what_the_last_requests_committed(
    db, outbox, nats_server, monkeypatch
):
    async def no_listen():
        raise ConnectionError("LISTEN is unavailable (a pooler in transaction mode)")

    monkeypatch.setattr(db, "connect_raw", no_listen)
    bus = await connect(nats_server.url)
    relay = OutboxRelay(db, bus, outbox.schema, poll_interval=60.0)
    first = [project_event("ts", n) for n in range(10)]
    await write_events(db, outbox, first)
    await relay.start()
    deadline = time.monotonic() + 10
    while await unsent(db, outbox):  # published, and the relay has gone to sleep for a minute
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    last = [project_event("ts", n) for n in range(10, 30)]
    await write_events(db, outbox, last, per_tx=5)  # the last requests before SIGTERM
    await relay.stop()
    assert await unsent(db, outbox) == 0
    assert [e.id for e in await read_stream(bus)] == [e.id for e in first + last]
    await bus.close()


async def test_batches_during_an_outage_leave_nothing_pending_in_the_client(
    db, outbox, nats_server
):
    bus = await connect(nats_server.url)
    bus.nc._max_pending_size = 1024  # the reconnect buffer fills at once, as in a long outage
    relay = OutboxRelay(db, bus, outbox.schema, publish_timeout=1.0)
    await write_events(db, outbox, [project_event("tp", n) for n in range(20)])
    nats_server.stop()
    deadline = time.monotonic() + 10
    while bus.nc.is_connected:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for _ in range(3):
        assert await relay.relay_once() == 0
    assert bus.js.publish_async_pending() == 0  # no ack future left behind, no permit taken
    nats_server.start()
    await bus.close()


async def test_a_tenants_later_rows_wait_while_an_older_one_is_held_elsewhere(
    db, outbox, nats_server
):
    # Another relay's transaction holds tx's oldest row, as when its commit lands in the middle
    # of this relay's claim: the claim skips that row, and must then skip the tenant's later ones.
    bus = await connect(nats_server.url)
    events = [project_event(t, n) for n in range(5) for t in ("tx", "ty")]
    await write_events(db, outbox, events)
    relay = OutboxRelay(db, bus, outbox.schema)
    holder = await db.connect_raw()
    holding = holder.transaction()
    await holding.start()
    await holder.execute(
        f'SELECT 1 FROM "{outbox.schema}".outbox WHERE seq = (SELECT min(seq) FROM '  # noqa: S608
        f'"{outbox.schema}".outbox WHERE tenant_key = $1) FOR UPDATE',
        "tx",
    )
    assert await relay.relay_once() == 5  # ty's, and none of tx's
    await holding.rollback()
    await holder.close()
    assert await relay.relay_once() == 5
    stream = await read_stream(bus)
    assert [e.id for e in stream if e.tenant_id == "tx"] == [e.id for e in events[::2]]
    assert_in_order_per_tenant(stream)
    await bus.close()
