"""Tenant schemas are clones of the template: a clone is the migrated schema, catalog for catalog.

Provisioning copies `tenant_template` (kept at head by `saas migrate`) instead of running the
migrations; these tests prove the copy is exact, for today's tenant migrations and for a
template holding every kind of object the cloner claims to copy, and that it refuses what it
cannot copy rather than make a schema unlike a migrated one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from saas.common.db import Database
from saas.common.db_roles import TENANCY
from saas.common.migrations import find_alembic_ini, tenant_revisions
from saas.common.settings import DatabaseSettings
from saas.common.tenant_names import schema_for
from saas.tenancy import schemas
from tests.support.catalog import describe

RICH_TEMPLATE = """
CREATE TYPE mood AS ENUM ('calm', 'busy', 'it''s complicated');
CREATE SEQUENCE ticket_numbers AS integer START WITH 100 INCREMENT BY 5 CACHE 3;
CREATE TABLE boards (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 7 INCREMENT BY 2) PRIMARY KEY,
    serial_no serial,
    title varchar(80) NOT NULL DEFAULT 'untitled',
    slug text COLLATE "C" NOT NULL,
    title_length int GENERATED ALWAYS AS (length(title)) STORED,
    mood mood NOT NULL DEFAULT 'calm',
    ticket int NOT NULL DEFAULT nextval('ticket_numbers'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_boards_slug UNIQUE (slug),
    CONSTRAINT ck_boards_title CHECK (btrim(title) <> '')
) WITH (fillfactor = 80);
CREATE TABLE cards (
    id uuid PRIMARY KEY,
    board_id bigint NOT NULL,
    position numeric(10, 2),
    tags text[] NOT NULL DEFAULT '{}',
    CONSTRAINT fk_cards_board FOREIGN KEY (board_id) REFERENCES boards (id) ON DELETE CASCADE
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX ix_cards_board_position ON cards (board_id, position DESC NULLS LAST);
CREATE UNIQUE INDEX ix_boards_lower_title ON boards (lower(title)) WHERE mood <> 'busy';
CREATE VIEW busy_boards AS SELECT id, title FROM boards WHERE mood = 'busy';
COMMENT ON TABLE boards IS 'where cards live';
COMMENT ON COLUMN boards.title IS 'what people see';
CREATE TABLE alembic_version (version_num varchar(32) NOT NULL,
                              CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));
INSERT INTO alembic_version VALUES ('rich1');
INSERT INTO boards (title, slug) VALUES ('seeded', 'seeded');
"""


@pytest.fixture
async def tenancy_db(stack) -> AsyncIterator[Database]:
    """The tenancy login, which owns tenant schemas (and may only read the template)."""
    db = Database.from_settings(
        DatabaseSettings.load(database_url=stack.database_url(TENANCY.name))
    )
    yield db
    await db.dispose()


def new_schema(prefix: str = "clone") -> str:
    return schema_for(f"{prefix}-{uuid.uuid4().hex[:8]}")


async def clone(db: Database, schema: str, cloner: schemas.Cloner | None = None) -> str | None:
    async with db.session() as session:
        return await (cloner or schemas.Cloner()).clone(session, schema)


async def described(db: Database, schema: str) -> dict:
    async with db.session() as session:
        return await describe(session, schema)


async def make_template(db: Database, ddl: str) -> str:
    """A template of the test's own, built by hand (a tenant schema name, so it may be one)."""
    template = new_schema("tpl")
    async with db.session() as session:
        await session.execute(text(f'CREATE SCHEMA "{template}"'))
        await session.execute(text(f'SET LOCAL search_path TO "{template}"'))
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.execute(ddl)
    return template


async def test_a_cloned_schema_equals_a_migrated_one(stack, tenancy_db):
    migrated, cloned = new_schema("migrated"), new_schema("cloned")
    url = stack.database_url(TENANCY.name)
    await schemas.upgrade_in_subprocess(find_alembic_ini(), migrated, url)
    assert await clone(tenancy_db, cloned) == tenant_revisions(find_alembic_ini())[-1]

    want, got = await described(tenancy_db, migrated), await described(tenancy_db, cloned)
    assert got == want
    # Not two empty descriptions: the tenant tables are there, with what makes them what they are.
    assert {r[0] for r in got["relations"]} >= {"projects", "settings", "alembic_version"}
    assert {r[1] for r in got["constraints"]} >= {"projects_pkey", "ck_projects_name_not_blank"}
    assert {r[1] for r in got["indexes"]} >= {"ix_projects_created_at_id"}


async def test_every_kind_of_object_the_cloner_copies_comes_out_the_same(db):
    """A hand-made template with enums, sequences, identity, serial and generated columns,
    collations, storage options, checks, uniques, deferrable foreign keys, expression and partial
    indexes, a view, comments and rows: its clone describes exactly as the template does."""
    template = await make_template(db, RICH_TEMPLATE)
    copy = new_schema("rich")
    assert await clone(db, copy, schemas.Cloner(template=template)) == "rich1"

    assert await described(db, copy) == await described(db, template)
    async with db.session() as session:
        seeded = await session.execute(text(f'SELECT title, ticket FROM "{copy}".boards'))
        assert [tuple(r) for r in seeded] == [("seeded", 100)]
        # Sequences carry on after the template's values (a cached sequence may skip some).
        await session.execute(
            text(f"INSERT INTO \"{copy}\".boards (title, slug) VALUES ('b', 'b')")
        )
        numbers = await session.execute(text(f'SELECT id, ticket FROM "{copy}".boards ORDER BY id'))
        (first_id, first_ticket), (next_id, next_ticket) = [tuple(r) for r in numbers]
        assert (first_id, first_ticket, next_id) == (7, 100, 9) and next_ticket > 100
    with pytest.raises(Exception, match="cannot insert a non-DEFAULT value"):  # still ALWAYS
        async with db.session() as session:
            await session.execute(
                text(f"INSERT INTO \"{copy}\".boards (id, title, slug) VALUES (1, 'c', 'c')")
            )


@pytest.mark.parametrize(
    ("ddl", "named"),
    [
        ("CREATE FUNCTION touch() RETURNS int LANGUAGE sql AS 'SELECT 1'", "function touch"),
        (
            "CREATE TABLE t (id int); CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS "
            "'BEGIN RETURN NEW; END'; CREATE TRIGGER tr BEFORE INSERT ON t "
            "FOR EACH ROW EXECUTE FUNCTION f()",
            "trigger tr",
        ),
        ("CREATE DOMAIN positive AS int CHECK (VALUE > 0)", "type positive"),
        ("CREATE TABLE t (id int); ALTER TABLE t ENABLE ROW LEVEL SECURITY", "row level security"),
        ("CREATE TABLE t (id int) PARTITION BY RANGE (id)", "partitioned table t"),
    ],
)
async def test_the_cloner_refuses_what_it_cannot_copy_and_says_what(db, ddl, named):
    template = await make_template(
        db,
        ddl + "; CREATE TABLE alembic_version (version_num text);"
        " INSERT INTO alembic_version VALUES ('x')",
    )
    copy = new_schema("refused")
    with pytest.raises(schemas.TemplateNotCloneable, match=named):
        await clone(db, copy, schemas.Cloner(template=template))
    async with db.session() as session:
        assert not await schemas.schema_exists(session, copy)  # nothing half-made


async def test_cloning_an_existing_schema_changes_nothing(tenancy_db):
    schema = new_schema()
    assert await clone(tenancy_db, schema) is not None
    async with tenancy_db.session() as session:
        await session.execute(
            text(f"INSERT INTO \"{schema}\".settings (key, value) VALUES ('kept', '1')")
        )
    assert await clone(tenancy_db, schema) is None
    async with tenancy_db.session() as session:
        kept = await session.execute(text(f'SELECT key FROM "{schema}".settings'))
        assert kept.scalars().all() == ["kept"]


async def test_twenty_tenants_cloned_at_once_are_all_complete(tenancy_db):
    names = [new_schema("burst") for _ in range(20)]
    versions = await asyncio.gather(*(clone(tenancy_db, s) for s in names))
    head = tenant_revisions(find_alembic_ini())[-1]
    assert versions == [head] * 20
    first = await described(tenancy_db, names[0])
    for schema in names[1:]:
        assert await described(tenancy_db, schema) == first


async def test_the_tenancy_login_reads_the_template_but_cannot_change_it(tenancy_db):
    async with tenancy_db.session() as session:
        assert await schemas.schema_version(session, schemas.TEMPLATE) is not None
    for statement in (
        "INSERT INTO \"tenant_template\".settings (key, value) VALUES ('x', '1')",
        'ALTER TABLE "tenant_template".projects ADD COLUMN mine int',
        'DROP SCHEMA "tenant_template" CASCADE',
    ):
        with pytest.raises(Exception, match="permission denied|must be owner"):
            async with tenancy_db.session() as session:
                await session.execute(text(statement))


async def test_the_template_can_never_be_a_tenant():
    from saas.common.tenant_names import InvalidSlugError

    with pytest.raises(InvalidSlugError, match="reserved"):
        schema_for("template")


async def test_drop_refuses_the_template_and_drops_a_tenant_schema(tenancy_db):
    schema = new_schema("dropped")
    await clone(tenancy_db, schema)
    async with tenancy_db.session() as session:
        assert await schemas.drop_schema(session, schema) is True
    async with tenancy_db.session() as session:
        assert await schemas.drop_schema(session, schema) is False  # again: nothing to do
        with pytest.raises(ValueError, match="template"):
            await schemas.drop_schema(session, schemas.TEMPLATE)
