"""What a schema is made of, read from the catalogs, with the schema's own name taken out: two
schemas that `describe` the same are the same to any code that uses them.

Written apart from `saas.tenancy.schemas` (information_schema where it says enough, other
catalog functions where it does not), so that a test comparing a clone with a migrated schema
does not grade the cloner with its own reading of the catalog.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind::text, c.relpersistence::text, c.reloptions::text,
               obj_description(c.oid, 'pg_class')
        FROM pg_class c WHERE c.relnamespace = to_regnamespace(:s) AND c.relkind <> 'i'
        ORDER BY c.relname""",
    "columns": """
        SELECT table_name, ordinal_position_rank, column_name, data_type, udt_schema, udt_name,
               character_maximum_length, numeric_precision, numeric_scale, datetime_precision,
               is_nullable, column_default, is_identity, identity_generation, identity_start,
               identity_increment, identity_maximum, identity_minimum, identity_cycle,
               is_generated, generation_expression, collation_name, comment
        FROM (SELECT c.*, rank() OVER (PARTITION BY c.table_name ORDER BY c.ordinal_position)
                          AS ordinal_position_rank,
                     col_description(to_regclass(quote_ident(c.table_schema) || '.' ||
                                     quote_ident(c.table_name)), c.ordinal_position) AS comment
              FROM information_schema.columns c WHERE c.table_schema = :s) x
        ORDER BY table_name, ordinal_position_rank""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid, true),
               k.condeferrable, k.condeferred, k.convalidated
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.connamespace = to_regnamespace(:s) ORDER BY c.relname, k.conname""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = :s
        ORDER BY tablename, indexname""",
    "sequences": """
        SELECT sequence_name, data_type, start_value, minimum_value, maximum_value, increment,
               cycle_option
        FROM information_schema.sequences WHERE sequence_schema = :s ORDER BY sequence_name""",
    "sequence_owners": """
        SELECT s.relname, d.deptype::text, t.relname, a.attname
        FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
        JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a
          ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE s.relkind = 'S' AND s.relnamespace = to_regnamespace(:s) ORDER BY s.relname""",
    "types": """
        SELECT t.typname, t.typtype::text,
               array_to_string(array(SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid
                                     ORDER BY e.enumsortorder), ',')
        FROM pg_type t WHERE t.typnamespace = to_regnamespace(:s) ORDER BY t.typname""",
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = :s ORDER BY viewname""",
    "triggers": """
        SELECT event_object_table, trigger_name, action_statement
        FROM information_schema.triggers WHERE trigger_schema = :s ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname FROM pg_proc p WHERE p.pronamespace = to_regnamespace(:s) ORDER BY 1""",
}


async def describe(session: AsyncSession, schema: str) -> dict[str, Any]:
    """Everything above for `schema`, in the session's transaction."""
    # With only the schema on the path, definitions name its objects unqualified.
    await session.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    described: dict[str, Any] = {}
    for what, query in QUERIES.items():
        rows = await session.execute(text(query), {"s": schema})
        described[what] = [_anonymous(tuple(r), schema) for r in rows]
    version = await session.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
    described["version"] = [tuple(r) for r in version]
    return described


def _anonymous(row: tuple, schema: str) -> tuple:
    return tuple(v.replace(schema, "<schema>") if isinstance(v, str) else v for v in row)
