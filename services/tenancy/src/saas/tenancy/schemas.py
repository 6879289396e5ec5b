"""Tenant schemas: made by cloning the template, brought to the migrations' head, dropped.

`tenant_template` is a tenant schema nobody uses, kept at the head of the tenant migrations by
`saas migrate` (`saas.tenancy.release`). A new tenant's schema is a copy of it, made in one
transaction from the template's catalog: enum types, sequences, tables with their columns,
defaults, identity and generated columns, NOT NULL, rows (the version table's among them),
constraints, indexes, foreign keys, views and comments. That is one round trip of DDL, where
running the migrations would replay every revision through Alembic, whose module-level state
(`alembic.context`, `alembic.op`) also forbids running two at once in threads of one process.
What the cloner does not know how to copy (functions, triggers, policies, domains, ...) makes it
refuse, naming it, rather than produce a schema unlike a migrated one; the test that compares a
clone with a migrated schema catalog by catalog fails first.

Every change takes the schema's lock (`tenant_lock_sql`), shared with migrations, migrate-all,
deletion and restores. A clone holds the template's lock shared, so it never reads the template
half-way through a migration of it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.events.faults import sqlstate
from saas.common.migrations import tenant_lock_sql
from saas.common.redact import redact
from saas.common.tenant_names import quote_schema, validate_schema_name
from saas.tenancy.schema_rules import TEMPLATE

UNDEFINED_TABLE, UNDEFINED_SCHEMA = "42P01", "3F000"


class TemplateMissing(RuntimeError):
    """The template schema is not there (yet): `saas migrate` creates it."""


class TemplateNotCloneable(RuntimeError):
    """The template holds something the cloner cannot copy; `objects` names it."""

    def __init__(self, objects: list[str]) -> None:
        super().__init__(
            "the tenant template holds what cloning cannot copy: "
            + ", ".join(objects)
            + " (teach saas.tenancy.schemas to copy it)"
        )
        self.objects = objects


class NotATenantSchema(RuntimeError):
    """A schema with the tenant's name exists but has no version table: not one of ours."""


@dataclass(frozen=True)
class ClonePlan:
    """The statements that make a copy of the template at `version`; they run with the search
    path set to the new schema, so every name in them is unqualified."""

    version: str
    statements: tuple[str, ...]


@dataclass
class Cloner:
    """Clones the template; keeps the plan of each template version it has read."""

    template: str = TEMPLATE
    plans: dict[str, ClonePlan] = field(default_factory=dict)

    async def clone(self, session: AsyncSession, schema: str) -> str | None:
        """Create `schema` as a copy of the template in the session's transaction. Returns the
        version it is at, or None when the schema already exists (then it is left as it is)."""
        validate_schema_name(schema)
        # The first statement through the session begins its transaction (the script below goes
        # through the driver's connection, inside it). What follows is read after the locks.
        locks = ", ".join(
            sql.removeprefix("SELECT ")
            for sql in (tenant_lock_sql(self.template, shared=True), tenant_lock_sql(schema))
        )
        await session.execute(text(f"SELECT {locks}"))
        template = quote_schema(self.template)
        query = (
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :schema), "  # noqa: S608 - a validated name
            f"(SELECT version_num FROM {template}.alembic_version)"
        )
        try:
            found = await session.execute(text(query), {"schema": schema})
        except DBAPIError as exc:
            if sqlstate(exc) in (UNDEFINED_TABLE, UNDEFINED_SCHEMA):
                raise TemplateMissing(f"{self.template} is missing: run `saas migrate`") from None
            raise
        taken, version = found.one()
        if taken:
            if await schema_version(session, schema) is None:
                raise NotATenantSchema(f"schema {schema} exists but has no alembic_version")
            return None
        if version is None:
            raise TemplateMissing(f"{self.template} has no version: run `saas migrate`")
        plan = self.plans.get(version)
        if plan is None:
            plan = self.plans[version] = await read_plan(session, version, self.template)
        quoted = quote_schema(schema)
        script = [f"CREATE SCHEMA {quoted}", f"SET LOCAL search_path TO {quoted}"]
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.execute(";\n".join([*script, *plan.statements]))
        return plan.version


async def schema_exists(session: AsyncSession, schema: str) -> bool:
    found = await session.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
    )
    return found.scalar() is not None


async def version_of(session: AsyncSession, schema: str) -> str:
    """The revision of a schema known to be a tenant's (one query; raises if it is not)."""
    found = await session.execute(
        text(f"SELECT version_num FROM {quote_schema(schema)}.alembic_version")  # noqa: S608 - a validated name
    )
    return found.scalar_one()


async def schema_version(session: AsyncSession, schema: str) -> str | None:
    """The revision a tenant schema is at; None when it has no version table (or is missing)."""
    quoted = quote_schema(schema)
    table = await session.execute(
        text("SELECT to_regclass(:name)"), {"name": f"{quoted}.alembic_version"}
    )
    if table.scalar() is None:
        return None
    version = await session.execute(text(f"SELECT version_num FROM {quoted}.alembic_version"))  # noqa: S608 - a validated, quoted name
    return version.scalar()


async def drop_schema(session: AsyncSession, schema: str) -> bool:
    """Drop a tenant schema and everything in it (in the session's transaction); False if it was
    already gone."""
    validate_schema_name(schema)
    if schema == TEMPLATE:
        raise ValueError("the template is not a tenant's to drop")
    await session.execute(text(tenant_lock_sql(schema)))
    existed = await schema_exists(session, schema)
    await session.execute(text(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE"))
    return existed


# -- reading the template's catalog --------------------------------------------------------------
# Run with the search path set to the template only: PostgreSQL then writes the names of the
# template's own objects unqualified in every definition it prints (defaults, constraints,
# views), except index definitions, which always name their table's schema (see `_index`).

_UNSUPPORTED = """
SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = :ns
UNION ALL
SELECT CASE relkind WHEN 'm' THEN 'materialized view ' WHEN 'p' THEN 'partitioned table '
                    WHEN 'f' THEN 'foreign table ' ELSE 'composite type ' END || relname
FROM pg_class WHERE relnamespace = :ns AND relkind IN ('m', 'p', 'f', 'c')
UNION ALL
SELECT 'row level security on ' || relname FROM pg_class WHERE relnamespace = :ns AND relrowsecurity
UNION ALL
SELECT 'trigger ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = :ns AND NOT t.tgisinternal
UNION ALL
SELECT 'policy ' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relnamespace = :ns
UNION ALL
SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
WHERE c.relnamespace = :ns AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'type ' || typname FROM pg_type
WHERE typnamespace = :ns AND (typtype IN ('d', 'r', 'm', 'p') OR (typtype = 'b' AND typcategory <> 'A'))
UNION ALL
SELECT 'inherited table ' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE c.relnamespace = :ns
UNION ALL
SELECT 'statistics object ' || stxname FROM pg_statistic_ext WHERE stxnamespace = :ns
"""

_ENUMS = """
SELECT format('CREATE TYPE %I AS ENUM (%s)', t.typname,
              string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder))
FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
WHERE t.typnamespace = :ns GROUP BY t.oid, t.typname ORDER BY t.oid
"""

# Every sequence, with the column that owns it: deptype 'i' is an identity column's, 'a' a
# serial's (OWNED BY); none is a free-standing sequence.
_SEQUENCES = """
SELECT quote_ident(c.relname) AS name, format_type(s.seqtypid, NULL) AS type, s.seqstart,
       s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
       d.deptype::text AS deptype, quote_ident(t.relname) AS owner_table, quote_ident(a.attname) AS owner_column,
       d.refobjid AS table_oid, d.refobjsubid AS attnum
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('i', 'a')
LEFT JOIN pg_class t ON t.oid = d.refobjid
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE c.relnamespace = :ns ORDER BY c.oid
"""

_TABLES = """
SELECT c.oid, quote_ident(c.relname) AS name, c.relpersistence = 'u' AS unlogged, c.reloptions,
       quote_literal(obj_description(c.oid, 'pg_class')) AS comment
FROM pg_class c WHERE c.relnamespace = :ns AND c.relkind = 'r' ORDER BY c.oid
"""

_COLUMNS = """
SELECT a.attrelid AS table_oid, a.attnum, quote_ident(a.attname) AS name,
       format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attidentity::text AS identity, a.attgenerated::text AS generated,
       pg_get_expr(d.adbin, d.adrelid) AS expression,
       CASE WHEN a.attcollation <> ty.typcollation THEN
           (SELECT quote_ident(n.nspname) || '.' || quote_ident(co.collname)
            FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace
            WHERE co.oid = a.attcollation) END AS collation,
       quote_literal(col_description(a.attrelid, a.attnum)) AS comment,
       (ty.typnamespace = :ns OR el.typnamespace = :ns) AS local_type
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type ty ON ty.oid = a.atttypid
LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typelem <> 0
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace = :ns AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# PostgreSQL 18 keeps NOT NULL as named constraints ('n'); earlier versions have none here.
_CONSTRAINTS = """
SELECT k.conrelid AS table_oid, quote_ident(c.relname) AS table_name,
       quote_ident(k.conname) AS name, k.contype::text AS type,
       pg_get_constraintdef(k.oid) AS definition, k.conkey
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE k.connamespace = :ns AND k.conrelid <> 0 AND k.conislocal
ORDER BY k.contype = 'f', k.conrelid, k.oid
"""

_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = :ns AND NOT EXISTS (
    SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
ORDER BY i.indexrelid
"""

_VIEWS = """
SELECT quote_ident(c.relname) AS name, c.reloptions, pg_get_viewdef(c.oid) AS definition,
       quote_literal(obj_description(c.oid, 'pg_class')) AS comment
FROM pg_class c WHERE c.relnamespace = :ns AND c.relkind = 'v' ORDER BY c.oid
"""


async def read_plan(
    session: AsyncSession, version: str, template_name: str = TEMPLATE
) -> ClonePlan:
    """The statements that copy the template, read from its catalog (in the session's
    transaction, which holds the template's lock)."""
    template = quote_schema(template_name)
    await session.execute(text(f"SET LOCAL search_path TO {template}"))
    ns = (
        await session.execute(
            text("SELECT oid FROM pg_namespace WHERE nspname = :n"), {"n": template_name}
        )
    ).scalar_one()

    async def rows(query: str) -> list:
        return list(await session.execute(text(query), {"ns": ns}))

    unsupported = [r[0] for r in await rows(_UNSUPPORTED)]
    if unsupported:
        raise TemplateNotCloneable(unsupported)

    sequences = await rows(_SEQUENCES)
    identity = {(s.table_oid, s.attnum): s for s in sequences if s.deptype == "i"}
    not_null_names = {
        (k.table_oid, k.conkey[0]): k.name for k in await rows(_CONSTRAINTS) if k.type == "n"
    }
    columns: dict[int, list] = {}
    for column in await rows(_COLUMNS):
        columns.setdefault(column.table_oid, []).append(column)

    create: list[str] = [r[0] for r in await rows(_ENUMS)]
    create += [
        f"CREATE SEQUENCE {s.name} {_sequence_options(s)}" for s in sequences if s.deptype != "i"
    ]
    copies: list[str] = []
    comments: list[str] = []
    for table in await rows(_TABLES):
        definitions = [
            _column(
                c, identity.get((table.oid, c.attnum)), not_null_names.get((table.oid, c.attnum))
            )
            for c in columns.get(table.oid, [])
        ]
        options = f" WITH ({', '.join(table.reloptions)})" if table.reloptions else ""
        unlogged = "UNLOGGED " if table.unlogged else ""
        create.append(f"CREATE {unlogged}TABLE {table.name} ({', '.join(definitions)}){options}")
        stored = [c for c in columns.get(table.oid, []) if not c.generated]
        if stored:  # rows a migration wrote (the version table's, reference data) come along
            # A value of the template's own type (an enum) becomes one of the copy's by its text.
            values = [f"{c.name}::text::{c.type}" if c.local_type else c.name for c in stored]
            copies.append(
                f"INSERT INTO {table.name} ({', '.join(c.name for c in stored)}) "  # noqa: S608 - catalog names, quoted
                f"OVERRIDING SYSTEM VALUE SELECT {', '.join(values)} FROM {template}.{table.name}"
            )
        if table.comment:
            comments.append(f"COMMENT ON TABLE {table.name} IS {table.comment}")
        comments += [
            f"COMMENT ON COLUMN {table.name}.{c.name} IS {c.comment}"
            for c in columns.get(table.oid, [])
            if c.comment
        ]
    create += [
        f"ALTER SEQUENCE {s.name} OWNED BY {s.owner_table}.{s.owner_column}"
        for s in sequences
        if s.deptype == "a"
    ]
    copies += [
        f"SELECT setval({_literal(s.name)}, last_value, is_called) FROM {template}.{s.name}"  # noqa: S608
        for s in sequences
    ]
    constraints = [k for k in await rows(_CONSTRAINTS) if k.type != "n"]
    keys = [
        f"ALTER TABLE {k.table_name} ADD CONSTRAINT {k.name} {k.definition}"
        for k in constraints
        if k.type != "f"
    ]
    indexes = [_index(r.definition, template_name) for r in await rows(_INDEXES)]
    foreign = [
        f"ALTER TABLE {k.table_name} ADD CONSTRAINT {k.name} {k.definition}"
        for k in constraints
        if k.type == "f"
    ]
    views: list[str] = []
    for view in await rows(_VIEWS):
        options = f" WITH ({', '.join(view.reloptions)})" if view.reloptions else ""
        views.append(f"CREATE VIEW {view.name}{options} AS {view.definition.rstrip(';')}")
        if view.comment:
            comments.append(f"COMMENT ON VIEW {view.name} IS {view.comment}")
    statements = (*create, *copies, *keys, *indexes, *foreign, *views, *comments)
    return ClonePlan(version, statements)


def _column(column, identity, not_null_name: str | None) -> str:
    parts = [column.name, column.type]
    if column.collation:
        parts.append(f"COLLATE {column.collation}")
    if column.generated == "s":
        parts.append(f"GENERATED ALWAYS AS ({column.expression}) STORED")
    elif column.generated == "v":
        parts.append(f"GENERATED ALWAYS AS ({column.expression}) VIRTUAL")
    elif column.expression is not None:
        parts.append(f"DEFAULT {column.expression}")
    if not_null_name:
        parts.append(f"CONSTRAINT {not_null_name} NOT NULL")
    elif column.not_null:
        parts.append("NOT NULL")
    if column.identity in ("a", "d"):
        when = "ALWAYS" if column.identity == "a" else "BY DEFAULT"
        # An identity's sequence takes the column's type: no AS.
        options = f"SEQUENCE NAME {identity.name} {_sequence_options(identity, typed=False)}"
        parts.append(f"GENERATED {when} AS IDENTITY ({options})")
    return " ".join(parts)


def _sequence_options(s, *, typed: bool = True) -> str:
    cycle = "CYCLE" if s.seqcycle else "NO CYCLE"
    options = (
        f"INCREMENT BY {s.seqincrement} MINVALUE {s.seqmin} MAXVALUE {s.seqmax} "
        f"START WITH {s.seqstart} CACHE {s.seqcache} {cycle}"
    )
    return f"AS {s.type} {options}" if typed else options


def _index(definition: str, template: str) -> str:
    """An index definition without the template's name: PostgreSQL always qualifies the table."""
    for on in (" ON ONLY ", " ON "):
        qualified = f"{on}{template}."
        if qualified in definition:
            definition = definition.replace(qualified, on, 1)
            break
    if f"{template}." in definition:
        raise TemplateNotCloneable([f"index naming the template elsewhere: {definition}"])
    return definition


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


# -- catching up with the migrations --------------------------------------------------------------
async def upgrade_in_subprocess(ini: Path, schema: str, database_url: str) -> None:
    """Run the tenant migrations on one schema in a process of its own: Alembic's module-level
    state must never be shared by two migrations running at once."""
    validate_schema_name(schema)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        str(ini),
        "-n",
        "tenant",
        "upgrade",
        "head",
        f"--tag={schema}",
        env={**os.environ, "DATABASE_URL": database_url, "MIGRATIONS_DIR": str(ini.parent)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        tail = redact(output.decode(errors="replace").strip()[-800:])
        raise MigrationFailed(f"migrating {schema} failed: {tail}")


class MigrationFailed(RuntimeError):
    pass
