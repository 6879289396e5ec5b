"""What every benchmark needs: the servers (embedded unless given), the logins, the release steps,
and the service processes, each with its own database login and NATS user, as `saas dev` runs
them. Everything it starts lives under one temporary folder, removed when the run ends, also
when interrupted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from saas.common.cli import discover_processes
from saas.common.commands.migrate import release
from saas.common.db_roles import MIGRATE
from saas.devstack.database import DatabaseLogins, set_up_logins
from saas.devstack.servers import EmbeddedStack, StackPorts, free_port
from saas.devstack.supervisor import Child, Supervisor

ROOT = Path(__file__).resolve().parent.parent
SERVERS = {
    "DATABASE_URL": "postgres",
    "NATS_URL": "nats",
    "REDIS_URL": "valkey",
    "TEMPORAL_HOST": "temporal",
}


@dataclass
class Bench:
    folder: Path
    logins: DatabaseLogins
    nats_url: str  # the operators' user: the bench itself may do anything
    children: dict[str, Child]
    env: dict[str, str]


@asynccontextmanager
async def running(
    processes: Iterable[str], *, servers: Iterable[str] = ("postgres", "nats"), **env: str
) -> AsyncIterator[Bench]:
    """The named processes on the servers they need; the servers' URLs may be given instead."""
    folder = Path(tempfile.mkdtemp(prefix="saas-bench-"))
    stack: EmbeddedStack | None = None
    supervisor: Supervisor | None = None
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up on SIGTERM too
    try:
        wanted = {
            name for var, name in SERVERS.items() if name in servers and not os.environ.get(var)
        }
        if wanted:
            stack = EmbeddedStack(folder / "stack", StackPorts.ephemeral(), temporal_ui=False)
            await asyncio.to_thread(stack.start, only=wanted)
            os.environ.update({k: v for k, v in stack.env().items() if SERVERS.get(k) in wanted})
        os.environ.setdefault("MIGRATIONS_DIR", str(ROOT / "migrations"))
        logins = await asyncio.to_thread(set_up_logins, os.environ["DATABASE_URL"], folder)
        await asyncio.to_thread(release, lambda _: None, database_url=logins.url(MIGRATE.name))
        nats = stack.nats_logins() if stack and "nats" in wanted else None
        base = {
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
            **{k: os.environ[k] for k in SERVERS if os.environ.get(k)},
            **env,
        }
        supervisor = Supervisor(
            base,
            database_urls=logins.urls,
            nats_urls=nats.urls if nats else None,
            log_dir=folder / "logs",
        )
        specs = [s for s in discover_processes() if s.name in set(processes)]
        children = supervisor.start(
            specs,
            {s.name: free_port() for s in specs},
            {s.name: free_port() for s in specs if s.public},
        )
        await asyncio.to_thread(supervisor.wait_ready, 90)
        yield Bench(
            folder, logins, os.environ["NATS_URL"], {c.spec.name: c for c in children}, base
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
        if stack is not None:
            stack.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)
