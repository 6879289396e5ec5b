"""Every pooled connection has default timeouts: no request hangs on a stuck query or a held lock."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from saas.common.db import Database
from saas.common.settings import DatabaseSettings

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def bounded():
    db = Database.from_settings(
        DatabaseSettings.load(
            db_statement_timeout=0.5, db_lock_timeout=0.3, db_idle_in_transaction_timeout=5
        )
    )
    yield db
    await db.dispose()


async def test_connections_carry_the_timeouts_from_settings(bounded):
    async with bounded.session() as session:
        values = [
            (await session.execute(text(f"SHOW {name}"))).scalar_one()
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        ]
    assert values == ["500ms", "300ms", "5s"]


async def test_a_stuck_statement_is_cancelled(bounded):
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="statement timeout"):
        async with bounded.session() as session:
            await session.execute(text("SELECT pg_sleep(5)"))


async def test_a_lock_held_elsewhere_is_waited_for_only_so_long(bounded, db):
    schema = f"scratch_{uuid.uuid4().hex[:10]}"
    async with db.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.execute(text(f'CREATE TABLE "{schema}".lock_probe (id int)'))
    holder_has_it, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.session() as session:
            await session.execute(
                text(f'LOCK TABLE "{schema}".lock_probe IN ACCESS EXCLUSIVE MODE')
            )
            holder_has_it.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holder_has_it.wait()
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="lock timeout"):
            async with bounded.session() as session:
                await session.execute(text(f'SELECT * FROM "{schema}".lock_probe'))
    finally:
        release.set()
        await holder
        async with db.engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
