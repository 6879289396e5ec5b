"""Real PostgreSQL errors, as SQLAlchemy and asyncpg raise them, classified as the consumer does."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from saas.common.db import Database
from saas.common.events.faults import fault_of, is_outage
from saas.common.settings import DatabaseSettings
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
