"""Who may do what in the database: the migration login owns, the runtime logins only use.

The test session sets the roles up as production does (`bootstrap_roles`, then migrations as the
migration login), and every login needs its password, so these are the real rules.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from saas.common.db import Database
from saas.common.db_roles import AUDIT, AUDIT_WRITER, IDENTITY, MIGRATE, RUNTIME_LOGINS, TENANCY
from saas.common.migrations import find_alembic_ini, upgrade_tenant
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for

REFUSED = "permission denied|must be owner"
RUNTIME = [login.name for login in RUNTIME_LOGINS]


@pytest.fixture
async def login_db(stack) -> AsyncIterator:
    opened: list[Database] = []

    def open_as(login: str) -> Database:
        db = Database.from_settings(DatabaseSettings.load(database_url=stack.database_url(login)))
        opened.append(db)
        return db

    yield open_as
    for db in opened:
        await db.dispose()


async def rows(db: Database, sql: str, **params) -> list[tuple]:
    async with db.session() as session:
        return [tuple(r) for r in await session.execute(text(sql), params)]


async def test_the_migration_login_owns_every_owner_schema_and_its_tables(db):
    owners = await rows(
        db,
        "SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('identity', 'audit', 'public') AND c.relkind IN ('r', 'S', 'p')",
    )
    assert {t for _, t, _ in owners} >= {"tenants", "outbox", "events", "processed_events"}
    assert {owner for *_, owner in owners} == {MIGRATE.name}
    schemas = await rows(
        db,
        "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace "
        "WHERE nspname IN ('identity', 'audit')",
    )
    assert dict(schemas) == {"identity": MIGRATE.name, "audit": MIGRATE.name}


async def test_runtime_logins_own_nothing_but_tenant_schemas(db):
    owned = await rows(
        db,
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        # A tenant table's TOAST table (and its index) lives in pg_toast, owned like the table.
        "WHERE pg_get_userbyid(c.relowner) = ANY(:logins) AND n.nspname NOT LIKE 'tenant\\_%' "
        "AND NOT (n.nspname = 'pg_toast' AND EXISTS (SELECT 1 FROM pg_class t "
        "JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE tn.nspname LIKE 'tenant\\_%' "
        "AND (t.reltoastrelid = c.oid OR t.reltoastrelid = (SELECT indrelid FROM pg_index "
        "WHERE indexrelid = c.oid)))) "
        "UNION ALL SELECT nspname, '' FROM pg_namespace "
        "WHERE pg_get_userbyid(nspowner) = ANY(:logins) AND nspname NOT LIKE 'tenant\\_%'",
        logins=RUNTIME,
    )
    assert owned == []


async def test_runtime_logins_have_no_powers_and_can_become_no_other_role(db):
    powers = await rows(
        db,
        "SELECT rolname FROM pg_roles WHERE rolname = ANY(:logins) "
        "AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication)",
        logins=RUNTIME,
    )
    assert powers == []
    memberships = await rows(
        db,
        "SELECT pg_get_userbyid(member), pg_get_userbyid(roleid) FROM pg_auth_members "
        "WHERE pg_get_userbyid(member) = ANY(:logins)",
        logins=RUNTIME,
    )
    assert memberships == [(AUDIT.name, AUDIT_WRITER)]


async def test_every_login_needs_its_password(stack):
    for login in (MIGRATE, IDENTITY, TENANCY, AUDIT):
        url = make_url(stack.database_url(login.name))
        for password in (None, "not-the-password"):
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(
                    host=url.host,
                    port=url.port,
                    database=url.database,
                    user=login.name,
                    password=password,
                )


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE public.tenants ADD COLUMN mine int",
        "DROP TABLE public.outbox",
        "CREATE TABLE public.mine (id int)",
        "ALTER SCHEMA identity RENAME TO mine",
        "CREATE TABLE audit.mine (id int)",
        "DROP SCHEMA audit CASCADE",
        "SET ROLE saas_migrate",
        "UPDATE public.alembic_version SET version_num = '0001'",
    ],
)
async def test_the_tenancy_login_cannot_alter_what_migrations_own(login_db, statement):
    with pytest.raises(DBAPIError, match=REFUSED):
        async with login_db(TENANCY.name).session() as session:
            await session.execute(text(statement))


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE identity.outbox ADD COLUMN mine int",
        "TRUNCATE identity.processed_events",
        "CREATE SCHEMA mine",
        "SELECT count(*) FROM public.tenants",
        "SELECT count(*) FROM audit.events",
    ],
)
async def test_the_identity_login_reaches_only_its_own_rows(login_db, statement):
    with pytest.raises(DBAPIError, match=REFUSED):
        async with login_db(IDENTITY.name).session() as session:
            await session.execute(text(statement))


async def test_each_service_login_uses_its_own_tables(login_db):
    event_id = uuid.uuid4()
    async with login_db(IDENTITY.name).session() as session:
        await session.execute(
            text(
                "INSERT INTO identity.outbox (event_id, type, body) VALUES (:id, 'x.y', 'x'::bytea)"
            ),
            {"id": event_id},
        )
        await session.execute(
            text("DELETE FROM identity.outbox WHERE event_id = :id"), {"id": event_id}
        )
    async with login_db(TENANCY.name).session() as session:
        await session.execute(
            text("INSERT INTO public.tenants (id, slug, name) VALUES (:id, :slug, 'Roles')"),
            {"id": event_id, "slug": f"roles-{event_id.hex[:8]}"},
        )
        await session.execute(
            text("UPDATE public.tenants SET status = 'ready' WHERE id = :id"), {"id": event_id}
        )


async def test_the_tenancy_login_provisions_tenant_schemas_it_owns(stack, login_db, db):
    slug = f"own-{uuid.uuid4().hex[:8]}"
    schema = schema_for(slug)
    tenancy_url = stack.database_url(TENANCY.name)
    await asyncio.to_thread(upgrade_tenant, find_alembic_ini(), schema, database_url=tenancy_url)
    owners = await rows(
        db,
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :s "
        "UNION ALL SELECT tableowner FROM pg_tables WHERE schemaname = :s",
        s=schema,
    )
    assert owners and {o for (o,) in owners} == {TENANCY.name}
    async with login_db(TENANCY.name).get_tenant_session(slug) as session:
        await session.execute(
            text("INSERT INTO projects (id, name, created_by) VALUES (:id, 'p', :id)"),
            {"id": uuid.uuid4()},
        )
