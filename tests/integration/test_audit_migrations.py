"""The audit log's migrations against rows written before them, in a database of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url

from saas.audit import store
from saas.audit.chain import GENESIS, canonical, link_hash
from saas.audit.main import AuditSettings
from saas.common.db import Database
from saas.common.db_roles import AUDIT, MIGRATE, bootstrap_roles
from saas.common.migrations import alembic_config, find_alembic_ini
from saas.common.settings import DatabaseSettings
from tests.support.audit import events_for


def _on(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
async def scratch_database(stack) -> AsyncIterator[str]:
    """A new database with the logins' rights in it; yields its name."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    admin = make_url(stack.database_admin_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)

    async def as_admin(statement: str) -> None:
        # A connection per statement: none sits idle across the test.
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    await as_admin(f'CREATE DATABASE "{name}"')
    try:
        await bootstrap_roles(_on(stack.database_admin_url, name), {})
        yield name
    finally:
        await as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate_audit(stack, database: str, revision: str) -> None:
    url = _on(stack.database_url(MIGRATE.name), database)
    command.upgrade(alembic_config(find_alembic_ini(), "audit", database_url=url), revision)


async def test_entries_written_before_stored_bytes_are_backfilled_and_verify(
    stack, scratch_database
):
    await asyncio.to_thread(_migrate_audit, stack, scratch_database, "0004")
    tenant = f"old-{uuid.uuid4().hex[:6]}"
    writer = Database.from_settings(
        AuditSettings.load(database_url=_on(stack.database_url(AUDIT.name), scratch_database))
    )
    try:
        prev = GENESIS
        async with writer.session() as session:
            for seq, event in enumerate(events_for(tenant, 5), start=1):
                entry = store.entry_from_event(event, seq)
                digest = link_hash(prev, canonical(entry))  # what 0002's code stored
                await session.execute(
                    store.events.insert().values(**entry, prev_hash=prev, hash=digest)
                )
                prev = digest
        await asyncio.to_thread(_migrate_audit, stack, scratch_database, "head")
        async with writer.session() as session:
            result = await store.verify(session, tenant, checkpoints=())
        assert result.ok and result.checked == 5
    finally:
        await writer.dispose()
    owner = Database.from_settings(
        DatabaseSettings.load(database_url=_on(stack.database_admin_url, scratch_database))
    )
    try:
        async with owner.session() as session:
            enabled = (
                await session.execute(
                    text(
                        "SELECT tgenabled::text FROM pg_trigger "
                        "WHERE tgname = 'events_refuse_update_delete'"
                    )
                )
            ).scalar_one()
        assert enabled == "O"  # the append-only trigger is back on after the backfill
    finally:
        await owner.dispose()
