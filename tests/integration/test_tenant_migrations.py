"""Tenant migrations are safe behind PgBouncer in transaction mode.

There, consecutive transactions of one client may run on different server connections, and a
server connection passes from client to client. A session-level `SET search_path` would leak
the tenant's path into whoever gets that server connection next, and would be missing from our
next transaction. No PgBouncer wheel exists, so the property is proven directly: every statement
a tenant migration sends is captured, and the path may only ever be set with `SET LOCAL`, inside
the transaction that runs the DDL.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from saas.common.db import Database
from saas.common.migrations import find_alembic_ini, upgrade_tenant
from saas.common.tenant_names import schema_for

pytestmark = pytest.mark.usefixtures("stack")

SESSION_SET_PATH = re.compile(r"^\s*SET\s+(SESSION\s+)?search_path\b", re.IGNORECASE)
LOCAL_SET_PATH = re.compile(r"^\s*SET\s+LOCAL\s+search_path\b", re.IGNORECASE)
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP)\s+(TABLE|INDEX)\b", re.IGNORECASE)


@contextmanager
def every_statement() -> Iterator[list[tuple[str, str]]]:
    """What any engine sends while the block runs: ("begin"|"commit"|"rollback"|"sql", text)."""
    trail: list[tuple[str, str]] = []
    listeners = {
        "begin": lambda conn: trail.append(("begin", "")),
        "commit": lambda conn: trail.append(("commit", "")),
        "rollback": lambda conn: trail.append(("rollback", "")),
        "before_cursor_execute": lambda conn, cursor, sql, *_: trail.append(("sql", sql)),
    }
    for name, listener in listeners.items():
        event.listen(Engine, name, listener)
    try:
        yield trail
    finally:
        for name, listener in listeners.items():
            event.remove(Engine, name, listener)


def transactions(trail: list[tuple[str, str]]) -> list[list[str]]:
    """The statements grouped by transaction; a statement outside any transaction fails the test."""
    grouped: list[list[str]] = []
    current: list[str] | None = None
    for kind, sql in trail:
        if kind == "begin":
            current = []
        elif kind in ("commit", "rollback"):
            assert current is not None, f"{kind} without a transaction"
            grouped.append(current)
            current = None
        else:
            assert current is not None, f"sent outside a transaction: {sql}"
            current.append(sql)
    assert current is None, "a transaction was left open"
    return grouped


def new_tenant_schema() -> str:
    return schema_for(f"mig-{uuid.uuid4().hex[:8]}")


async def test_tenant_migration_sets_its_path_only_inside_the_ddl_transaction():
    schema = new_tenant_schema()
    with every_statement() as trail:
        await asyncio.to_thread(upgrade_tenant, find_alembic_ini(), schema)

    sent = [sql for kind, sql in trail if kind == "sql"]
    assert not [s for s in sent if SESSION_SET_PATH.match(s)], "a session-level SET search_path"
    groups = transactions(trail)
    with_ddl = [g for g in groups if any(DDL.match(s) for s in g)]
    assert with_ddl, "the migration ran no DDL"
    for group in with_ddl:
        first_ddl = next(i for i, s in enumerate(group) if DDL.match(s))
        sets = [i for i, s in enumerate(group) if LOCAL_SET_PATH.match(s)]
        assert sets and sets[0] < first_ddl, "DDL ran before SET LOCAL search_path"
        assert f'"{schema}"' in group[sets[0]]
    for group in groups:
        if any(LOCAL_SET_PATH.match(s) for s in group):
            assert group in with_ddl, "SET LOCAL search_path in a transaction without the DDL"


async def test_the_connection_keeps_the_server_default_path_after_a_tenant_migration(db: Database):
    """What PgBouncer would hand the next client: the very server connection the migration used."""
    schema = new_tenant_schema()
    ini = find_alembic_ini()
    async with db.engine.connect() as conn:
        default = (await conn.execute(text("SHOW search_path"))).scalar_one()
        await conn.commit()
        await conn.run_sync(lambda sync: upgrade_tenant(ini, schema, connection=sync))
        after = (await conn.execute(text("SHOW search_path"))).scalar_one()
        created = (await conn.execute(text(f"SELECT to_regclass('{schema}.projects')"))).scalar()
    assert after == default and "tenant_" not in after
    assert created == f"{schema}.projects"
