"""What every benchmark needs: the servers (embedded unless given), the logins, the release steps,
and the service processes, each with its own database login and NATS user, as `saas dev` runs
them. Everything it starts lives under one temporary folder, removed when the run ends, also
when interrupted (Ctrl-C or SIGTERM).

`servers_running()` and `processes_running()` are the two halves, for benchmarks that do something between them
(write a backlog before the services start, or start other processes on the same servers);
`running()` is both at once.
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

import psutil

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
class Servers:
    folder: Path  # everything the run writes goes under it
    logins: DatabaseLogins
    nats_url: str  # the operators' user: the bench itself may do anything
    nats_urls: dict[str, str] | None  # each service's NATS user, when the bench started NATS
    env: dict[str, str]  # what every process it starts shares
    stack: EmbeddedStack | None

    def server_processes(self) -> dict[str, psutil.Process]:
        """The embedded servers' main processes, by name (none for servers that were given)."""
        if self.stack is None:
            return {}
        return {
            s.name: psutil.Process(s.process.pid)
            for s in self.stack.servers
            if s.process is not None and s.process.poll() is None
        }


@dataclass
class Bench:
    folder: Path
    logins: DatabaseLogins
    nats_url: str  # the operators' user: the bench itself may do anything
    children: dict[str, Child]
    env: dict[str, str]
    servers: dict[str, psutil.Process]  # the embedded servers' main processes, by name


@asynccontextmanager
async def servers_running(
    servers: Iterable[str] = ("postgres", "nats"), **env: str
) -> AsyncIterator[Servers]:
    """The servers (the given URLs', or embedded ones), the logins and the release steps."""
    folder = Path(tempfile.mkdtemp(prefix="saas-bench-"))
    stack: EmbeddedStack | None = None
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
        yield Servers(
            folder, logins, os.environ["NATS_URL"], nats.urls if nats else None, base, stack
        )
    finally:
        if stack is not None:
            stack.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)


@asynccontextmanager
async def processes_running(
    at: Servers, names: Iterable[str], **env: str
) -> AsyncIterator[dict[str, Child]]:
    """The named service processes on `at`'s servers, ready; stopped when the block ends."""
    supervisor = Supervisor(
        {**at.env, **env},
        database_urls=at.logins.urls,
        nats_urls=at.nats_urls,
        log_dir=at.folder / "logs",
    )
    try:
        specs = [s for s in discover_processes() if s.name in set(names)]
        children = supervisor.start(
            specs,
            {s.name: free_port() for s in specs},
            {s.name: free_port() for s in specs if s.public},
        )
        await asyncio.to_thread(supervisor.wait_ready, 90)
        yield {c.spec.name: c for c in children}
    finally:
        supervisor.stop()


@asynccontextmanager
async def running(
    names: Iterable[str], *, servers: Iterable[str] = ("postgres", "nats"), **env: str
) -> AsyncIterator[Bench]:
    """The named processes on the servers they need; the servers' URLs may be given instead."""
    async with (
        servers_running(servers, **env) as at,
        processes_running(at, names) as children,
    ):
        yield Bench(at.folder, at.logins, at.nats_url, children, at.env, at.server_processes())
