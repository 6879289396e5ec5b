"""`saas tenants migrate-all`: every tenant schema at the head of the tenant migrations.

1. The template must be at the head already (`saas migrate` keeps it there, and runs first): a
   tenant provisioned while this runs is cloned from it, so it starts at the head.
2. One query over every tenant schema's version table (a UNION ALL) finds which are behind; with
   nothing to do, that is the whole run, and it goes through asyncpg alone: neither SQLAlchemy
   nor Alembic is imported, whose imports used to be most of the command's time.
3. Those behind are migrated by `--concurrency` processes, never threads: Alembic's module-level
   state is not thread-safe. Each process keeps one connection and migrates one schema at a time
   in one transaction that first takes the schema's lock, the lock provisioning, deletion and
   restores take, so a tenant being provisioned or deleted meanwhile is never half-migrated, and
   one dropped meanwhile is skipped, not recreated.
4. A failure is reported with its tenant and the run goes on; running it again is safe.

Tenants provisioning, ready or suspended are migrated (a provisioning one whose schema exists
already is migrated under its lock, and provisioning re-checks the head after cloning); failed
and deleted tenants have no schema to migrate.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from saas.common.migrations import (
    SchemaMissing,
    migration_connection,
    migration_engine,
    tenant_revisions,
    upgrade_tenant,
)
from saas.common.redact import describe
from saas.common.tenant_names import InvalidSlugError, quote_schema, schema_for
from saas.tenancy.lifecycle import WITH_SCHEMA
from saas.tenancy.schema_rules import TEMPLATE, is_behind

if TYPE_CHECKING:
    import asyncpg

UNION_CHUNK = 2000


class TemplateBehind(RuntimeError):
    """The template is not at this code's head: `saas migrate` has not run for this release."""


@dataclass(frozen=True)
class Outcome:
    schema: str
    before: str | None
    after: str | None = None
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Plan:
    head: str
    at_head: list[str]
    behind: list[tuple[str, str | None]]  # schema, its version
    ahead: list[tuple[str, str]]  # a version this code does not know: a newer release's


async def make_plan(database_url: str | None, revisions: list[str]) -> Plan:
    """Which tenant schemas are behind, in a few queries whatever their number (through asyncpg
    alone: SQLAlchemy and Alembic are loaded only by the processes that migrate)."""
    connection = await migration_connection(database_url)
    try:
        async with connection.transaction(readonly=True):
            template = await _versions(connection, [TEMPLATE])
            if template.get(TEMPLATE) != revisions[-1]:
                raise TemplateBehind(
                    f"{TEMPLATE} is at {template.get(TEMPLATE) or 'nothing'}, not at the head "
                    f"{revisions[-1]}: run `saas migrate` first (it keeps the template at head)"
                )
            slugs = await connection.fetch(
                "SELECT slug FROM public.tenants WHERE status = ANY($1::text[]) ORDER BY slug",
                [s.value for s in WITH_SCHEMA],
            )
            schemas = [s for s in (_schema(row[0]) for row in slugs) if s is not None]
            versions = await _versions(connection, schemas)
    finally:
        await connection.close()
    plan = Plan(head=revisions[-1], at_head=[], behind=[], ahead=[])
    for schema in schemas:
        if schema not in versions:
            continue  # no schema yet (provisioning will clone the template) or no version table
        version = versions[schema]
        if version == plan.head:
            plan.at_head.append(schema)
        elif is_behind(version, revisions):
            plan.behind.append((schema, version))
        else:
            plan.ahead.append((schema, version))
    return plan


def _schema(slug: str) -> str | None:
    try:
        return schema_for(slug)
    except InvalidSlugError:
        return None


async def _versions(connection: asyncpg.Connection, schemas: list[str]) -> dict[str, str]:
    """Each existing schema's version, by one UNION ALL over the version tables of those that
    have one."""
    found = await connection.fetch(
        "SELECT n.nspname FROM pg_namespace n JOIN pg_class c "
        "ON c.relnamespace = n.oid AND c.relname = 'alembic_version' AND c.relkind = 'r' "
        "WHERE n.nspname = ANY($1::text[])",
        schemas,
    )
    with_table = [row[0] for row in found]
    versions: dict[str, str] = {}
    for start in range(0, len(with_table), UNION_CHUNK):
        chunk = with_table[start : start + UNION_CHUNK]
        # Plain SELECTs plan in a fraction of the time scalar subqueries take (0.03 s against
        # 0.2 s for 1,000 schemas); a schema with an empty version table has no row.
        union = " UNION ALL ".join(
            f"SELECT '{s}' AS schema, version_num FROM {quote_schema(s)}.alembic_version"  # noqa: S608 - validated names
            for s in chunk
        )
        for schema, version in await connection.fetch(union):
            versions[schema] = version
    return versions


# -- the processes that migrate ------------------------------------------------------------------
_state: dict[str, object] = {}


def _start_process(database_url: str | None, ini: str) -> None:
    loop = asyncio.new_event_loop()
    _state.update(loop=loop, database_url=database_url, ini=Path(ini), connection=None)


def _migrate_one(schema: str, before: str | None) -> Outcome:
    loop: asyncio.AbstractEventLoop = _state["loop"]  # type: ignore[assignment]
    started = time.perf_counter()
    try:
        after = loop.run_until_complete(_upgrade(schema))
    except SchemaMissing:
        return Outcome(schema, before, skipped="its schema is gone (the tenant was deleted)")
    except Exception as exc:
        loop.run_until_complete(_reconnect())
        return Outcome(schema, before, seconds=time.perf_counter() - started, error=describe(exc))
    return Outcome(schema, before, after, seconds=time.perf_counter() - started)


async def _upgrade(schema: str) -> str | None:
    from sqlalchemy import text

    connection = _state.get("connection")
    if connection is None:
        engine = _state.get("engine") or migration_engine(_state["database_url"])  # type: ignore[arg-type]
        _state["engine"] = engine
        connection = _state["connection"] = await engine.connect()
    ini: Path = _state["ini"]  # type: ignore[assignment]
    await connection.run_sync(
        lambda sync: upgrade_tenant(ini, schema, connection=sync, only_existing=True)
    )
    version = await connection.execute(
        text(f"SELECT version_num FROM {quote_schema(schema)}.alembic_version")  # noqa: S608
    )
    after = version.scalar()
    await connection.rollback()
    return after


async def _reconnect() -> None:
    connection = _state.pop("connection", None)
    if connection is not None:
        try:
            await connection.close()
        except Exception:  # already broken: that is why we are here
            pass
    _state["connection"] = None


def migrate(
    database_url: str | None,
    ini: Path,
    behind: list[tuple[str, str | None]],
    *,
    concurrency: int,
    progress: Callable[[Outcome], object] = lambda _: None,
) -> list[Outcome]:
    """Migrate each schema of `behind` in a pool of processes; every outcome, failures too."""
    if not behind:
        return []
    outcomes: list[Outcome] = []
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state inherited
    with ProcessPoolExecutor(
        max_workers=min(concurrency, len(behind)),
        mp_context=context,
        initializer=_start_process,
        initargs=(database_url, str(ini)),
    ) as pool:
        futures = [pool.submit(_migrate_one, schema, before) for schema, before in behind]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            progress(outcome)
    return sorted(outcomes, key=lambda o: o.schema)


def run(
    database_url: str | None,
    ini: Path,
    *,
    concurrency: int,
    on_plan: Callable[[Plan], object] = lambda _: None,
    progress: Callable[[Outcome], object] = lambda _: None,
) -> tuple[Plan, list[Outcome]]:
    revisions = tenant_revisions(ini)
    plan = asyncio.run(make_plan(database_url, revisions))
    on_plan(plan)
    return plan, migrate(database_url, ini, plan.behind, concurrency=concurrency, progress=progress)


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.failed]
