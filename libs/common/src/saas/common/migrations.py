"""Alembic environments: one per owning service plus one shared by every tenant schema.

Each `migrations/<owner>/env.py` is two lines that call `run_owner_env` or `run_tenant_env`; the
owner's schema is named once, in its section of alembic.ini (`schema = identity`), and its
version table lives there (the tenant's own schema for tenant migrations).

Every change to a tenant schema's structure (a migration, creating it, dropping it, restoring it)
takes that schema's lock first (`tenant_lock_sql`), inside the transaction that makes the change,
so provisioning, `saas tenants migrate-all` and deletion never interleave on one tenant.

Alembic keeps module-level state (`alembic.context`, `alembic.op`): two migrations in threads of
one process step on each other. Run concurrent migrations in separate processes.

Alembic and SQLAlchemy are imported by the functions that use them, not with this module: their
imports alone take seconds, and `saas tenants migrate-all` with nothing to do needs only the
tenant tree's revisions (read from the files' source) and a few queries through asyncpg
(`migration_connection`).
"""

from __future__ import annotations

import ast
import asyncio
import configparser
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from saas.common.tenant_names import quote_schema, validate_identifier, validate_schema_name

if TYPE_CHECKING:
    import asyncpg
    from alembic.config import Config
    from sqlalchemy.engine import Connection

    from saas.common.settings import DatabaseSettings

TENANT_SECTION = "tenant"
TENANT_LOCK_LANE = "tenant-schema"


class SchemaMissing(RuntimeError):
    """A tenant schema to migrate only if it exists does not (its tenant was deleted meanwhile)."""


def tenant_lock_sql(schema: str, *, shared: bool = False) -> str:
    """The statement that takes a tenant schema's lock until the end of the transaction.

    Exclusive for anything that changes the schema's structure; shared to read a schema's
    structure while no one changes it (cloning the template). The name is validated, so it is
    safe as a literal, also in a multi-statement script."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    return (
        f"SELECT {function}(hashtext('{TENANT_LOCK_LANE}'), "
        f"hashtext('{validate_identifier(schema)}'))"
    )


def find_alembic_ini() -> Path:
    """`MIGRATIONS_DIR`, else the nearest `migrations/alembic.ini` at or above the working directory."""
    if env := os.environ.get("MIGRATIONS_DIR"):
        path = Path(env) / "alembic.ini"
        if not path.exists():
            raise FileNotFoundError(f"MIGRATIONS_DIR={env} has no alembic.ini")
        return path
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "migrations" / "alembic.ini"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("no migrations/alembic.ini here or above; set MIGRATIONS_DIR")


def owner_sections(ini: Path) -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ini)
    return [
        s
        for s in parser.sections()
        if parser.has_option(s, "script_location") and s != TENANT_SECTION
    ]


def alembic_config(
    ini: Path,
    section: str,
    *,
    database_url: str | None = None,
    connection: Connection | None = None,
) -> Config:
    """A section's config; `database_url` (default: DATABASE_URL) says who migrates, and a given
    `connection` is used as it is (alembic's "sharing a connection" recipe)."""
    from alembic.config import Config

    config = Config(str(ini), ini_section=section)
    if database_url is not None:
        config.attributes["database_url"] = database_url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_owners(
    ini: Path, revision: str = "head", *, database_url: str | None = None
) -> list[str]:
    from alembic import command

    sections = owner_sections(ini)
    for section in sections:
        command.upgrade(alembic_config(ini, section, database_url=database_url), revision)
    return sections


def upgrade_tenant(
    ini: Path,
    schema: str,
    revision: str = "head",
    *,
    database_url: str | None = None,
    connection: Connection | None = None,
    only_existing: bool = False,
) -> None:
    """Migrate one tenant schema (creating it if missing, unless `only_existing`: then a schema
    that is gone raises `SchemaMissing` and nothing is created)."""
    from alembic import command

    validate_schema_name(schema)
    config = alembic_config(ini, TENANT_SECTION, database_url=database_url, connection=connection)
    config.attributes["only_existing"] = only_existing
    command.upgrade(config, revision, tag=schema)


def tenant_revisions(ini: Path) -> list[str]:
    """The tenant tree's revisions, oldest first: the last one is the head. Reads the files only
    (no database, no alembic context), so any thread may call it."""
    chain = read_chain(ini, TENANT_SECTION)
    if chain is not None:
        return chain
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(str(ini), ini_section=TENANT_SECTION))
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the tenant migrations must have one head, not {heads}")
    return [s.revision for s in reversed(list(script.walk_revisions("base", heads[0])))]


# What Alembic takes for a revision file in a versions folder (alembic.script.base).
_REVISION_FILE = re.compile(r"(?!\.#|__init__).*\.py")
_REVISION_NAMES = {"revision", "down_revision", "branch_labels", "depends_on"}
_ELSEWHERE = {"version_locations", "recursive_version_locations", "sourceless"}


def read_chain(ini: Path, section: str) -> list[str] | None:
    """A section's revisions, oldest first, as Alembic finds them, read from the revision
    files' source without importing them or Alembic; None unless the tree is a plain chain in
    `<script_location>/versions` (no merge, branch label or dependency, no other version
    location, literal values): then ask Alembic."""
    parser = configparser.ConfigParser(defaults={"here": str(ini.absolute().parent)})
    if not parser.read(ini) or not parser.has_section(section):
        return None
    options = parser[section]
    location = options.get("script_location", "")
    if not location or ":" in location or _ELSEWHERE & set(options):
        return None
    parents: dict[str, str | None] = {}
    versions = Path(location) / "versions"
    if not versions.is_dir():
        return None
    for path in sorted(versions.iterdir()):
        if not path.is_file() or not _REVISION_FILE.fullmatch(path.name):
            continue
        values = _module_literals(path)
        if values is None or "down_revision" not in values:
            return None
        revision, parent = values.get("revision"), values["down_revision"]
        if values.get("branch_labels") or values.get("depends_on"):
            return None
        if not isinstance(revision, str) or revision in parents:
            return None
        if parent is not None and not isinstance(parent, str):
            return None  # a merge
        parents[revision] = parent
    child: dict[str | None, str] = {}
    for revision, parent in parents.items():
        if parent in child or (parent is not None and parent not in parents):
            return None  # a branch, or a parent that is not there
        child[parent] = revision
    chain: list[str] = []
    at: str | None = None
    while at in child:
        at = child[at]
        chain.append(at)
    return chain if chain and len(chain) == len(parents) else None


def _module_literals(path: Path) -> dict[str, object] | None:
    """The module-level `revision`, `down_revision`, `branch_labels` and `depends_on` of a
    revision file, or None if one is not a literal."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in _REVISION_NAMES:
            try:
                values[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                return None
    return values


def migration_engine(database_url: str | None = None):
    """An engine for migrations: no pool, no statement timeout (a backfill may take long), the
    lock timeout kept (it must not wait forever)."""
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    from saas.common.db import engine_options

    settings = _settings(database_url)
    connect_args = engine_options(settings, "saas-migrations")["connect_args"]
    # A migration may take long (a backfill, an index); it still must not wait forever for a lock.
    connect_args["server_settings"]["statement_timeout"] = "0"
    return create_async_engine(
        settings.database_url, poolclass=pool.NullPool, connect_args=connect_args
    )


async def migration_connection(database_url: str | None = None) -> asyncpg.Connection:
    """A plain asyncpg connection made as `migration_engine`'s are (no statement timeout), for
    reading versions without loading SQLAlchemy."""
    from saas.common.db_connect import connect

    return await connect(_settings(database_url), "saas-migrations", statement_timeout="0")


def _settings(database_url: str | None) -> DatabaseSettings:
    """The environment's database settings, with `database_url` instead of its URL if given."""
    from saas.common.settings import DatabaseSettings

    return (
        DatabaseSettings() if database_url is None else DatabaseSettings(database_url=database_url)
    )


def _migrate(
    connection: Connection, schema: str, *, in_schema: bool, only_existing: bool = False
) -> None:
    """Every pending migration of one schema, in one transaction.

    The transaction starts, for a tenant (`in_schema`), by taking the schema's lock; then it
    creates the schema if needed and, for a tenant, does `SET LOCAL search_path` to it, so tenant
    migrations create unqualified tables. The path
    ends with the transaction: behind PgBouncer in transaction mode the server connection goes
    back to the pool with its default path, and no statement of the migration can land on
    another server connection without it, as it could after a session-level SET and a commit.
    """
    from alembic import context
    from sqlalchemy import text

    quoted = quote_schema(schema)
    with connection.begin():
        if in_schema:
            connection.execute(text(tenant_lock_sql(schema)))
            if only_existing and not _schema_exists(connection, schema):
                raise SchemaMissing(f"schema {schema} does not exist")
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
        if in_schema:
            connection.execute(text(f"SET LOCAL search_path TO {quoted}"))
        # Begun here, so alembic sees an external transaction and runs every step inside it.
        context.configure(
            connection=connection,
            target_metadata=None,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()


def _schema_exists(connection: Connection, schema: str) -> bool:
    from sqlalchemy import text

    found = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    )
    return found.scalar() is not None


def _run(schema: str, *, in_schema: bool) -> None:
    from alembic import context

    attributes = context.config.attributes
    only_existing = bool(attributes.get("only_existing"))
    if attributes.get("connection") is not None:
        _migrate(attributes["connection"], schema, in_schema=in_schema, only_existing=only_existing)
        return

    async def main() -> None:
        engine = migration_engine(attributes.get("database_url"))
        try:
            async with engine.connect() as connection:
                await connection.run_sync(
                    _migrate, schema, in_schema=in_schema, only_existing=only_existing
                )
        finally:
            await engine.dispose()

    asyncio.run(main())


def run_owner_env() -> None:
    """env.py of a service that owns a schema: the section's `schema` option in alembic.ini names it."""
    from alembic import context

    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported")
    schema = context.config.get_main_option("schema")
    if not schema:
        raise SystemExit(
            f"[{context.config.config_ini_section}] in alembic.ini needs `schema = ...`"
        )
    _run(schema, in_schema=False)


def run_tenant_env() -> None:
    """env.py of the tenant tree: `alembic -n tenant upgrade head --tag=tenant_<slug>`."""
    from alembic import context

    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported")
    tag = context.get_tag_argument()
    if not tag:
        raise SystemExit("tenant migrations need --tag=tenant_<slug>")
    schema = validate_schema_name(tag)
    _run(schema, in_schema=True)
