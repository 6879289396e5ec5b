"""Real PostgreSQL errors, as SQLAlchemy and asyncpg raise them, classified as the consumer does."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy import event, text

from saas.common.db import Database
from saas.common.events.faults import fault_of, is_outage
from saas.common.migrations import find_alembic_ini, upgrade_tenant
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from tests.support.events import scratch_schema


@pytest.fixture
async def schema(db) -> str:
    return await scratch_schema(db)


async def failure(db: Database, *statements: str) -> sqlalchemy.exc.DBAPIError:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
        async with db.session() as session:
            for statement in statements:
                await session.execute(text(statement))
    return caught.value


async def test_a_failover_to_a_read_only_replica_is_an_outage(db, schema):
    error = await failure(db, "SET TRANSACTION READ ONLY", f'CREATE TABLE "{schema}".t (x int)')
    assert fault_of(error).reason == "25006"
    assert is_outage(error)


async def test_a_statement_timeout_is_an_outage(db):
    error = await failure(db, "SET LOCAL statement_timeout = 50", "SELECT pg_sleep(5)")
    assert fault_of(error).reason == "57014"
    assert is_outage(error)


async def test_a_lock_timeout_is_an_outage(db, schema):
    async with db.session() as holder:
        await holder.execute(text(f'LOCK TABLE "{schema}".processed_events'))
        error = await failure(
            db, "SET LOCAL lock_timeout = 50", f'SELECT * FROM "{schema}".processed_events'
        )
    assert fault_of(error).reason == "55P03"
    assert is_outage(error)


async def test_a_deadlock_is_an_outage(db, schema):
    table = f'"{schema}".processed_events'
    async with db.engine.begin() as conn:
        await conn.execute(
            text(f"INSERT INTO {table} (consumer, event_id) VALUES ('a', gen_random_uuid())")
        )
        await conn.execute(
            text(f"INSERT INTO {table} (consumer, event_id) VALUES ('b', gen_random_uuid())")
        )
    both_hold_one = asyncio.Barrier(2)

    async def lock(first: str, second: str) -> None:
        async with db.session() as session:
            await session.execute(
                text(f"UPDATE {table} SET consumer = '{first}' WHERE consumer = '{first}'")
            )
            await both_hold_one.wait()
            await session.execute(
                text(f"UPDATE {table} SET consumer = '{second}' WHERE consumer = '{second}'")
            )

    results = await asyncio.gather(lock("a", "b"), lock("b", "a"), return_exceptions=True)
    (error,) = [r for r in results if isinstance(r, Exception)]
    assert fault_of(error).reason == "40P01"
    assert is_outage(error)


@pytest.mark.parametrize(
    ("statements", "reason"),
    [
        (["SET LOCAL ROLE audit_writer", 'SELECT * FROM "{schema}".processed_events'], "42501"),
        (['SELECT * FROM "{schema}".missing'], "42P01"),
        (['SELECT missing FROM "{schema}".processed_events'], "42703"),
    ],
    ids=["wrong grant", "undefined table", "undefined column"],
)
async def test_grants_and_schema_mistakes_are_faults(db, schema, statements, reason):
    error = await failure(db, *(s.format(schema=schema) for s in statements))
    assert fault_of(error).reason == reason
    assert not is_outage(error)


async def test_a_pooled_connection_the_server_ended_is_replaced_before_it_is_used(db, stack):
    pooled = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_admin_url), pool_size=1, max_overflow=0
    )
    try:
        async with pooled.session() as session:
            first = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with db.session() as admin:  # a failover or a restart ends it while it is idle
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        async with pooled.session() as session:  # the pre-ping finds it dead: a new one
            second = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await pooled.dispose()


async def test_a_tenant_reader_whose_connection_the_server_ends_fails_once_then_works(
    db, one_connection
):
    """The superuser ends the reader's connection in the middle of its transaction: that read
    fails as a disconnect (an outage, which callers retry), the connection is thrown away, and
    the next read gets a new one."""
    slug = f"reader-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(upgrade_tenant, find_alembic_ini(), schema_for(slug))
    whose = sa.select(sa.func.pg_backend_pid().label("pid"))
    with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
        async with one_connection.get_tenant_session(slug, read_only=True) as reader:
            first = (await reader.one_or_none(whose))["pid"]
            async with db.session() as admin:
                await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first})
            await reader.all(whose)
    assert caught.value.connection_invalidated and is_outage(caught.value)
    async with one_connection.get_tenant_session(slug, read_only=True) as reader:
        second = (await reader.one_or_none(whose))["pid"]
    assert second != first


@pytest.fixture
async def one_connection(stack):
    db = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_admin_url, db_pool_size=1),
        max_overflow=0,
    )
    yield db
    await db.dispose()


async def test_an_error_at_commit_is_raised_as_sqlalchemy_raises_a_statements(one_connection):
    """COMMIT is sent by `Database` itself: a constraint checked at commit still comes out as a
    `DBAPIError` with its SQLSTATE (what consumers classify faults by), and the connection is
    usable afterwards."""
    with pytest.raises(sqlalchemy.exc.DBAPIError) as caught:
        async with one_connection.session() as session:
            await session.execute(
                text(
                    "CREATE TEMP TABLE once (x int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
                    " ON COMMIT DROP"
                )
            )
            await session.execute(text("INSERT INTO once VALUES (1), (1)"))
    assert fault_of(caught.value).reason == "23505"
    async with one_connection.session() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_connection_cancelled_mid_statement_never_returns_to_the_pool_in_a_transaction(
    one_connection,
):
    """A request cancelled while its statement runs (a deadline, a client gone): the next user of
    the pool's one connection starts clean, outside any transaction and at the default path."""
    started = asyncio.Event()

    async def slow() -> None:
        async with one_connection.get_tenant_session("cancelled-one") as session:
            started.set()
            await session.execute(text("SELECT pg_sleep(5)"))

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with one_connection.engine.connect() as conn:
        in_transaction = conn.sync_connection.connection.driver_connection.is_in_transaction()
        path = (await conn.execute(text("SHOW search_path"))).scalar_one()
    assert not in_transaction
    assert "tenant_" not in path
    async with one_connection.session() as session:
        assert (await session.execute(text("SELECT 2"))).scalar_one() == 2


async def test_a_tenant_transaction_takes_one_round_trip_for_begin_and_the_path(
    one_connection, monkeypatch
):
    """BEGIN and `SET LOCAL search_path` go as one simple query, COMMIT as another: a tenant
    transaction with one query is five round trips (the pool's ping, BEGIN with the path, the
    query's prepare, its execution, which asyncpg writes as Parse then Bind and Execute, and
    COMMIT): six writes, where SQLAlchemy on its own made nine in seven round trips."""
    import asyncio.selector_events as selector_events

    async with one_connection.session():  # the connection exists and is warm
        pass
    writes = []
    original = selector_events._SelectorSocketTransport.write

    def counted(self, data):
        writes.append(bytes(data[:60]))
        return original(self, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counted)
    async with one_connection.get_tenant_session("counted-one") as session:
        await session.execute(text("SELECT 1"))
    monkeypatch.undo()
    kinds = [w[:1] for w in writes]
    assert kinds == [b"Q", b"Q", b"P", b"P", b"B", b"Q"], writes
    assert b'BEGIN; SET LOCAL search_path TO "tenant_counted_one"' in writes[1]
    assert writes[-1].endswith(b"COMMIT\x00")


async def test_a_session_that_ran_nothing_or_failed_ends_its_transaction_and_keeps_its_connection(
    one_connection,
):
    async with one_connection.session() as session:
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with one_connection.session():
        pass
    with pytest.raises(RuntimeError):
        async with one_connection.get_tenant_session("failed-one"):
            raise RuntimeError("the handler failed before any statement")
    async with one_connection.session() as session:
        assert (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid


async def test_after_commit_hooks_run_once_the_commit_is_done(one_connection):
    """The audit log marks chains for checkpoints in `after_commit`: it must fire, and only then."""
    seen = []
    async with one_connection.session() as session:
        await session.execute(text("SELECT 1"))
        event.listen(session.sync_session, "after_commit", lambda _: seen.append("committed"))
        assert seen == []
    assert seen == ["committed"]
    with pytest.raises(RuntimeError):
        async with one_connection.session() as session:
            await session.execute(text("SELECT 1"))
            event.listen(session.sync_session, "after_commit", lambda _: seen.append("again"))
            raise RuntimeError("rolled back")
    assert seen == ["committed"]
