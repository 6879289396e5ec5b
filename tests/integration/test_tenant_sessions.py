"""Tenant sessions never leak the search path across tenants, even through one pooled connection."""

from __future__ import annotations

import asyncio
import enum
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from saas.common.db import Database
from saas.common.events.faults import sqlstate
from saas.common.migrations import find_alembic_ini, tenant_revisions, upgrade_tenant
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import InvalidSlugError, schema_for

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def one_connection_db():
    db = Database.from_settings(
        DatabaseSettings.load(db_pool_size=1, db_max_overflow=0, db_pool_timeout=10)
    )
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
def two_tenants() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    slugs = (f"alpha-{suffix}", f"beta-{suffix}")
    ini = find_alembic_ini()
    for slug in slugs:
        upgrade_tenant(ini, schema_for(slug))
    return slugs


async def insert_project(db: Database, slug: str, name: str, hold: float = 0.0) -> None:
    async with db.get_tenant_session(slug) as session:
        await session.execute(
            text("INSERT INTO projects (id, name, created_by) VALUES (:id, :name, :by)"),
            {"id": uuid.uuid4(), "name": name, "by": uuid.uuid4()},
        )
        await asyncio.sleep(hold)


async def project_names(db: Database, slug: str) -> set[str]:
    async with db.get_tenant_session(slug) as session:
        return set((await session.execute(text("SELECT name FROM projects"))).scalars())


async def test_concurrent_tenants_on_one_connection_see_only_their_own_rows(
    one_connection_db, two_tenants
):
    alpha, beta = two_tenants
    writes = [
        insert_project(one_connection_db, alpha if i % 2 == 0 else beta, f"p{i}", hold=0.005)
        for i in range(20)
    ]
    await asyncio.gather(*writes)
    alpha_rows, beta_rows = await asyncio.gather(
        project_names(one_connection_db, alpha), project_names(one_connection_db, beta)
    )
    assert alpha_rows == {f"p{i}" for i in range(0, 20, 2)}
    assert beta_rows == {f"p{i}" for i in range(1, 20, 2)}


async def test_search_path_returns_to_default_after_the_transaction(one_connection_db, two_tenants):
    async with one_connection_db.get_tenant_session(two_tenants[0]) as session:
        inside = (await session.execute(text("SHOW search_path"))).scalar_one()
    # Pool of one: this is the very connection the tenant session used.
    async with one_connection_db.engine.connect() as conn:
        after = (await conn.execute(text("SHOW search_path"))).scalar_one()
        unqualified = (await conn.execute(text("SELECT to_regclass('projects')"))).scalar_one()
    assert inside.strip('"') == schema_for(two_tenants[0])
    assert "public" in after and "tenant_" not in after
    assert unqualified is None


async def test_search_path_resets_when_the_transaction_fails(one_connection_db, two_tenants):
    with pytest.raises(RuntimeError):
        async with one_connection_db.get_tenant_session(two_tenants[1]):
            raise RuntimeError("handler failed")
    async with one_connection_db.engine.connect() as conn:
        assert "tenant_" not in (await conn.execute(text("SHOW search_path"))).scalar_one()


async def test_a_tenant_cannot_reach_another_by_unqualified_names(one_connection_db, two_tenants):
    alpha, beta = two_tenants
    async with one_connection_db.get_tenant_session(alpha) as session:
        await session.execute(
            text("INSERT INTO projects (id, name, created_by) VALUES (:id, 'alpha-only', :by)"),
            {"id": uuid.uuid4(), "by": uuid.uuid4()},
        )
    assert "alpha-only" not in await project_names(one_connection_db, beta)


async def test_unknown_or_hostile_slugs_never_reach_sql(one_connection_db):
    for slug in ['acme"; DROP TABLE projects; --', "Public", "a", "pg-catalog"]:
        with pytest.raises(InvalidSlugError):
            async with one_connection_db.get_tenant_session(slug):
                pass


# -- read only: the reader ------------------------------------------------------------------------
NAMES = sa.select(sa.column("name")).select_from(sa.table("projects")).order_by(sa.column("name"))
NAMED = NAMES.where(sa.column("name") == sa.bindparam("name"))


async def test_a_reader_reads_its_tenant_only_and_leaves_the_connection_clean(
    one_connection_db, two_tenants
):
    alpha, beta = two_tenants
    await insert_project(one_connection_db, alpha, "read-alpha")
    await insert_project(one_connection_db, beta, "read-beta")
    async with one_connection_db.get_tenant_session(alpha, read_only=True) as reader:
        names = [r["name"] for r in await reader.all(NAMES)]
        one = await reader.one_or_none(NAMED, {"name": "read-alpha"})
        other = await reader.one_or_none(NAMED, {"name": "read-beta"})
    assert "read-alpha" in names and "read-beta" not in names
    assert one["name"] == "read-alpha" and other is None
    assert names == sorted(await project_names(one_connection_db, alpha))  # as the session reads
    async with one_connection_db.engine.connect() as conn:  # the pool's one connection
        raw = (await conn.get_raw_connection()).driver_connection
        assert not raw.is_in_transaction()
        assert "tenant_" not in (await conn.execute(text("SHOW search_path"))).scalar_one()


async def test_a_reader_cannot_write(one_connection_db, two_tenants):
    insert = sa.insert(sa.table("projects", sa.column("id"), sa.column("name"))).values(
        id=sa.bindparam("id"), name=sa.bindparam("name")
    )
    with pytest.raises(DBAPIError) as refused:
        async with one_connection_db.get_tenant_session(two_tenants[0], read_only=True) as reader:
            await reader.all(insert, {"id": uuid.uuid4(), "name": "sneaky"})
    assert sqlstate(refused.value) == "25006"  # read_only_sql_transaction
    assert "sneaky" not in await project_names(one_connection_db, two_tenants[0])


async def test_a_reader_raises_errors_as_the_session_does_and_recovers(
    one_connection_db, two_tenants
):
    missing = sa.select(sa.column("x")).select_from(sa.table("no_such_table"))
    with pytest.raises(DBAPIError) as failed:
        async with one_connection_db.get_tenant_session(two_tenants[0], read_only=True) as reader:
            await reader.all(missing)
    assert sqlstate(failed.value) == "42P01"  # what tenancy turns into "no such tenant"
    with pytest.raises(RuntimeError):
        async with one_connection_db.get_tenant_session(two_tenants[0], read_only=True) as reader:
            await reader.all(NAMES)
            raise RuntimeError("the handler failed after reading")
    async with one_connection_db.get_tenant_session(two_tenants[1], read_only=True) as reader:
        assert await reader.all(NAMES) is not None  # the one connection is usable again


async def test_a_reader_cancelled_mid_statement_never_pools_a_connection_in_a_transaction(
    one_connection_db, two_tenants
):
    slow = sa.select(sa.func.pg_sleep(5))

    async def read() -> None:
        async with one_connection_db.get_tenant_session(two_tenants[0], read_only=True) as reader:
            await reader.all(slow)

    task = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with one_connection_db.get_tenant_session(two_tenants[1], read_only=True) as reader:
        assert (await reader.one_or_none(sa.select(sa.literal(1).label("one"))))["one"] == 1


async def test_a_reader_refuses_statements_whose_values_sqlalchemy_converts(
    one_connection_db, two_tenants
):
    class Colour(enum.Enum):
        RED = "red"

    converted = sa.select(sa.cast(sa.literal("red"), sa.Enum(Colour, name="colour")))
    async with one_connection_db.get_tenant_session(two_tenants[0], read_only=True) as reader:
        with pytest.raises(TypeError, match="through the session"):
            await reader.all(converted)


async def test_statement_caches_are_off(one_connection_db):
    async with one_connection_db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver._stmt_cache.get_max_size() == 0  # asyncpg
        assert raw.dbapi_connection._prepared_statement_cache is None  # SQLAlchemy's


async def test_alembic_cli_migrates_one_tenant(one_connection_db):
    slug = f"cli-{uuid.uuid4().hex[:6]}"
    schema = schema_for(slug)
    ini = str(find_alembic_ini())
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            ini,
            "-n",
            "tenant",
            "upgrade",
            "head",
            f"--tag={schema}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    async with one_connection_db.engine.connect() as conn:
        query = f'SELECT version_num FROM "{schema}".alembic_version'  # noqa: S608 - validated by schema_for
        version = (await conn.execute(text(query))).scalar_one()
        table = (await conn.execute(text(f"SELECT to_regclass('{schema}.projects')"))).scalar_one()
    assert version == tenant_revisions(find_alembic_ini())[-1]
    assert table == f"{schema}.projects"


def test_alembic_refuses_a_hostile_tag(stack):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(find_alembic_ini()),
            "-n",
            "tenant",
            "upgrade",
            "head",
            '--tag=tenant_x"; DROP SCHEMA public CASCADE; --',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "not a tenant schema name" in result.stderr
