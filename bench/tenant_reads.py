"""Benchmark: one tenant read (a 20-row project page) four ways, alternated, the client's CPU each.

- session:  `get_tenant_session(slug)` and `session.execute` (SQLAlchemy's session);
- driver:   `get_tenant_session(slug)`, the statement run on the session's driver connection;
- reader:   `get_tenant_session(slug, read_only=True)` (what tenancy's project reads use);
- asyncpg:  a plain asyncpg pool, `BEGIN; SET LOCAL search_path`, the statement, `COMMIT`.

Starts embedded PostgreSQL and NATS (or uses DATABASE_URL / NATS_URL), applies the release steps,
clones one tenant with 25 projects, then runs `--rounds` rounds of `--reads` reads per way,
`--concurrency` at a time, on uvloop, printing the process's CPU per read (user + system).

    .venv/bin/python bench/tenant_reads.py
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import servers_running  # noqa: E402
from saas.common.db import Database  # noqa: E402
from saas.common.db_roles import TENANCY  # noqa: E402
from saas.common.settings import DatabaseSettings  # noqa: E402
from saas.common.tenant_names import quote_schema, schema_for  # noqa: E402
from saas.tenancy.projects import PAGE, as_project  # noqa: E402
from saas.tenancy.schemas import Cloner  # noqa: E402
from saas.tenancy.store.tables import projects  # noqa: E402

SLUG = "bench-reads"


def cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


async def run(args: argparse.Namespace) -> None:
    async with servers_running(("postgres", "nats")) as at:
        url = at.logins.url(TENANCY.name)
        db = Database.from_settings(DatabaseSettings(database_url=url))
        async with db.session() as session:
            await Cloner().clone(session, schema_for(SLUG))
        async with db.get_tenant_session(SLUG) as session:
            for n in range(25):
                await session.execute(
                    projects.insert().values(
                        id=uuid.uuid4(), name=f"p{n}", description="d", created_by=uuid.uuid4()
                    )
                )
        sql = str(PAGE.compile(dialect=db.engine.dialect))
        begin = f"BEGIN; SET LOCAL search_path TO {quote_schema(schema_for(SLUG))}"
        plain = url.replace("postgresql+asyncpg://", "postgresql://")
        pool = await asyncpg.create_pool(
            plain, min_size=args.concurrency, max_size=args.concurrency, statement_cache_size=0
        )

        async def session_way() -> list:
            async with db.get_tenant_session(SLUG) as session:
                rows = (await session.execute(PAGE, {"limit": 21})).all()
            return [as_project(r._mapping) for r in rows[:20]]

        async def driver_way() -> list:
            async with db.get_tenant_session(SLUG) as session:
                conn = await session.connection()
                driver = (await conn.get_raw_connection()).driver_connection
                rows = await driver.fetch(sql, 21)
            return [as_project(r) for r in rows[:20]]

        async def reader_way() -> list:
            async with db.get_tenant_session(SLUG, read_only=True) as reader:
                rows = await reader.all(PAGE, {"limit": 21})
            return [as_project(r) for r in rows[:20]]

        async def asyncpg_way() -> list:
            async with pool.acquire() as connection:
                await connection.execute(begin)
                try:
                    rows = await connection.fetch(sql, 21)
                finally:
                    await connection.execute("COMMIT")
            return [as_project(r) for r in rows[:20]]

        ways = {
            "session": session_way,
            "driver": driver_way,
            "reader": reader_way,
            "asyncpg": asyncpg_way,
        }
        for way in ways.values():
            assert len(await way()) == 20
        limit = asyncio.Semaphore(args.concurrency)

        async def measure(way, reads: int) -> tuple[float, float]:
            async def one() -> None:
                async with limit:
                    await way()

            used, began = cpu(), time.perf_counter()
            await asyncio.gather(*(one() for _ in range(reads)))
            return (cpu() - used) / reads * 1e6, (time.perf_counter() - began) / reads * 1e6

        for way in ways.values():  # warm up: the pools fill, the statements compile
            await measure(way, 200)
        print(
            f"{args.reads} reads of a 20-row page per way and round, {args.concurrency} at a time"
        )
        for round_ in range(1, args.rounds + 1):
            for name, way in ways.items():
                used, wall = await measure(way, args.reads)
                print(
                    f"round {round_}  {name:8} CPU {used:6.0f} us/read   wall {wall:6.0f} us/read"
                )
        await pool.close()
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="one tenant read, four ways")
    parser.add_argument("--reads", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
