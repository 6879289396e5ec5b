"""One bad outbox row must not hold back the rest: it is quarantined, kept, counted and retryable;
the rows JetStream acknowledged are deleted.

The bad rows are real: a subject outside the stream (JetStream has no responder for it) and an
event over the stream's maximum message size (JetStream refuses it with an error ack), the stream
being declared with a limit below what services write.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from click.testing import CliRunner
from sqlalchemy import insert, text
from sqlalchemy import inspect as sa_inspect

from saas.common.bus import Bus
from saas.common.commands.events import events
from saas.common.db import Database
from saas.common.events import Actor, EventEnvelope, new_event
from saas.common.events.catalogue import ProjectCreated
from saas.common.events.outbox import Outbox
from saas.common.events.relay import OutboxRelay
from saas.common.events.stream import EVENTS_STREAM, apply_streams
from saas.common.events.tables import (
    downgrade_outbox_v2,
    downgrade_outbox_v3,
    outbox_table,
)
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings
from tests.support.events import (
    assert_in_order_per_tenant,
    connect,
    project_event,
    read_stream,
    scratch_schema,
    write_events,
)

STRAY_SUBJECT = "billing.invoice_paid"  # no stream covers it
STREAM_LIMIT = 4 * 1024  # EVENTS_MAX_MSG_BYTES, set too low...
OVERSIZE = 10 * 1024  # ...for a valid event of this size


@pytest.fixture
async def outbox(db) -> Outbox:
    return Outbox(await scratch_schema(db))


async def connect_with_small_limit(url: str) -> Bus:
    bus = await connect(url)
    await apply_streams(bus.js, EventSettings.load(events_max_msg_bytes=STREAM_LIMIT))
    return bus


async def write_row(db: Database, outbox: Outbox, event: EventEnvelope, subject: str) -> None:
    """An outbox row as a faulty service might write it: the subject is the row's, not the event's."""
    async with db.session() as session:
        await session.execute(
            insert(outbox.table).values(
                event_id=event.id, type=subject, tenant_key=event.tenant_id, body=event.to_bytes()
            )
        )


def oversized_event(tenant: str, n: int) -> EventEnvelope:
    project = ProjectCreated(tenant_id=tenant, project_id=f"{tenant}:{n}", name="x" * OVERSIZE)
    return new_event(project, source="saas/tests", actor=Actor.user("u-1"), tenant_id=tenant)


async def write_good_and_bad_rows(db: Database, outbox: Outbox) -> list[EventEnvelope]:
    """Ten events for each of three tenants, interleaved; ta:3 has a subject outside the stream and
    tb:5 is too big. Returns them in the order written."""
    written = []
    for n in range(10):
        for tenant in ("ta", "tb", "tc"):
            big = (tenant, n) == ("tb", 5)
            event = oversized_event(tenant, n) if big else project_event(tenant, n)
            if (tenant, n) == ("ta", 3):
                await write_row(db, outbox, event, STRAY_SUBJECT)
            else:
                await write_events(db, outbox, [event])
            written.append(event)
    return written


def named(events: list[EventEnvelope], *positions: str) -> list[str]:
    """The ids of the events at these positions ("ta:3"), in the order written."""
    return [e.id for e in events if e.data["project_id"] in positions]


async def outbox_rows(db: Database, outbox: Outbox) -> dict[str, dict]:
    """Every row left in the outbox (pending or quarantined) by event id, with its state."""
    async with db.session() as session:
        rows = await session.execute(
            text(
                "SELECT seq, event_id::text AS event_id, attempts, last_error, quarantined_at"
                f' FROM "{outbox.schema}".outbox ORDER BY seq'  # noqa: S608 - a test schema
            )
        )
        return {r.event_id: r._asdict() for r in rows}


async def eventually(read, expected, timeout: float = 20.0) -> None:
    """Wait until `await read()` gives `expected`."""
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, expected {expected!r}"
        await asyncio.sleep(0.05)


def saas_outbox(*args: str) -> str:
    """`saas events outbox ...`, as an operator runs it (DATABASE_URL is the session's)."""
    result = CliRunner().invoke(events, ["outbox", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def gauge(metrics: Metrics, name: str, schema: str) -> float | None:
    return metrics.registry.get_sample_value(f"saas_{name}", {"schema": schema})


async def test_a_bad_row_is_quarantined_after_its_attempts_and_every_other_row_is_published(
    db, outbox, nats_server
):
    bus = await connect_with_small_limit(nats_server.url)
    written = await write_good_and_bad_rows(db, outbox)
    stray, oversize = named(written, "ta:3", "tb:5")
    metrics = Metrics()
    relay = OutboxRelay(db, bus, outbox.schema, metrics=metrics, max_attempts=3)

    await relay.relay_once()
    rows = await outbox_rows(db, outbox)
    # Tenant tc had nothing wrong: all sent and deleted. A tenant's rows after its failed row
    # wait for it, in the outbox, even those JetStream acknowledged.
    waiting = named(written, *(f"ta:{n}" for n in range(3, 10)), *(f"tb:{n}" for n in range(5, 10)))
    assert list(rows) == waiting
    assert rows[stray]["attempts"] == rows[oversize]["attempts"] == 1
    assert "no responders" in rows[stray]["last_error"]
    assert "message size exceeds maximum" in rows[oversize]["last_error"]
    assert all(r["attempts"] == 0 for e, r in rows.items() if e not in (stray, oversize))

    await relay.relay_once()
    await relay.relay_once()  # the third attempt: both are quarantined now
    rows = await outbox_rows(db, outbox)
    for row in (rows[stray], rows[oversize]):
        assert row["attempts"] == 3 and row["quarantined_at"] is not None

    await relay.relay_once()  # what waited behind them goes on
    rows = await outbox_rows(db, outbox)
    assert list(rows) == [stray, oversize]  # kept, never deleted
    assert await relay.relay_once() == 0  # quarantined rows are not claimed again

    stream = await read_stream(bus)
    good = [e.id for e in written if e.id not in (stray, oversize)]
    assert sorted(e.id for e in stream) == sorted(good)  # every good row, once
    assert_in_order_per_tenant(stream)

    assert await relay.measure_lag() == (0, 0.0)  # quarantined rows are not pending...
    assert gauge(metrics, "outbox_quarantined", outbox.schema) == 2  # ...they are counted apart
    await bus.close()


async def test_quarantined_rows_are_listed_and_published_once_the_cause_is_fixed(
    db, outbox, nats_server
):
    bus = await connect_with_small_limit(nats_server.url)
    written = await write_good_and_bad_rows(db, outbox)
    stray, oversize = named(written, "ta:3", "tb:5")
    metrics = Metrics()
    relay = OutboxRelay(db, bus, outbox.schema, metrics=metrics, max_attempts=2, poll_interval=0.05)
    await relay.start()

    async def quarantined() -> set[str]:
        return {e for e, r in (await outbox_rows(db, outbox)).items() if r["quarantined_at"]}

    async def unsent() -> list[str]:
        return list(await outbox_rows(db, outbox))

    async def counted() -> float | None:
        return gauge(metrics, "outbox_quarantined", outbox.schema)

    await eventually(unsent, [stray, oversize])
    assert await quarantined() == {stray, oversize}
    await eventually(counted, 2)

    rows = await outbox_rows(db, outbox)
    listing = await asyncio.to_thread(saas_outbox, "list", "--schema", outbox.schema)
    for event_id, subject, error in (
        (stray, STRAY_SUBJECT, "no responders"),
        (oversize, "project.created", "message size exceeds maximum"),
    ):
        line = next(ln for ln in listing.splitlines() if event_id in ln)
        assert str(rows[event_id]["seq"]) in line and subject in line and error in line
        assert "attempts=2" in line

    # The causes are fixed: the stream takes bigger messages and covers the stray subject.
    info = await bus.js.stream_info(EVENTS_STREAM)
    config = info.config
    config.max_msg_size = 1024 * 1024
    config.subjects = [*config.subjects, "billing.>"]
    await bus.js.update_stream(config)

    seq = str(rows[oversize]["seq"])
    assert "retried 1" in await asyncio.to_thread(
        saas_outbox, "retry", "--schema", outbox.schema, "--seq", seq
    )
    await eventually(unsent, [stray])  # woken by the retry's notification
    assert "retried 1" in await asyncio.to_thread(saas_outbox, "retry", "--schema", outbox.schema)
    await eventually(unsent, [])
    await eventually(counted, 0)
    assert "no quarantined rows" in await asyncio.to_thread(
        saas_outbox, "list", "--schema", outbox.schema
    )
    await relay.stop()

    stray_msg = await bus.js.get_last_msg(EVENTS_STREAM, STRAY_SUBJECT)
    assert stray_msg.headers["Nats-Msg-Id"] == stray
    stream = await read_stream(bus)
    assert sorted(e.id for e in stream) == sorted(e.id for e in written if e.id != stray)
    await bus.close()


async def test_a_missing_stream_is_an_outage_and_counts_against_no_row(db, outbox, nats_server):
    bus = await connect(nats_server.url)
    events = [project_event(f"tm{n % 2}", n) for n in range(6)]
    await write_events(db, outbox, events)
    relay = OutboxRelay(db, bus, outbox.schema, max_attempts=1, publish_timeout=2.0)
    await bus.js.delete_stream(EVENTS_STREAM)  # no responders for any subject now

    for _ in range(3):
        assert await relay.relay_once() == 0
    rows = await outbox_rows(db, outbox)
    assert all(r["attempts"] == 0 and r["quarantined_at"] is None for r in rows.values())

    await apply_streams(bus.js, EventSettings.load())  # as the release step declares it
    assert await relay.relay_once() == 6
    assert [e.id for e in await read_stream(bus)] == [e.id for e in events]
    await bus.close()


async def outbox_shape(db: Database, schema: str) -> tuple[set[str], str, set[str]]:
    """The outbox's columns, the definition of the relay's index and the names of all its indexes."""
    async with db.session() as session:
        columns = await session.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = :s AND table_name = 'outbox'"
            ),
            {"s": schema},
        )
        indexes = await session.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = :s AND tablename = 'outbox'"
            ),
            {"s": schema},
        )
        defs = {name: definition for name, definition in indexes}
        return set(columns.scalars()), defs["ix_outbox_unsent"], set(defs)


@pytest.mark.parametrize("schema", ["identity", "public"])
async def test_the_owners_migrations_give_the_outbox_its_quarantine(db, schema):
    columns, relay_index, _ = await outbox_shape(db, schema)
    assert columns == {c.name for c in outbox_table(schema).columns}  # the runtime table agrees
    assert "quarantined_at IS NULL" in relay_index


@pytest.mark.parametrize("schema", ["identity", "public"])
async def test_the_owners_migrations_drop_the_index_only_pruning_read(db, schema):
    *_, indexes = await outbox_shape(db, schema)
    assert indexes == {
        "outbox_pkey",
        "uq_outbox_event_id",
        "ix_outbox_unsent",
        "ix_outbox_quarantined",
    }


async def test_the_migrations_can_be_undone(db, outbox):
    def downgrade(sync_conn) -> None:
        op = Operations(MigrationContext.configure(sync_conn))
        downgrade_outbox_v3(op, outbox.schema)
        assert "ix_outbox_sent_at" in {
            i["name"] for i in sa_inspect(sync_conn).get_indexes("outbox", schema=outbox.schema)
        }
        downgrade_outbox_v2(op, outbox.schema)

    async with db.engine.begin() as conn:
        await conn.run_sync(downgrade)
    columns, relay_index, _ = await outbox_shape(db, outbox.schema)
    assert not columns & {"attempts", "last_error", "quarantined_at"}
    assert "quarantined_at" not in relay_index


def test_the_command_refuses_a_schema_name_it_cannot_trust():
    result = CliRunner().invoke(events, ["outbox", "list", "--schema", 'identity"; DROP'])
    assert result.exit_code == 2 and "not a schema name" in result.output
