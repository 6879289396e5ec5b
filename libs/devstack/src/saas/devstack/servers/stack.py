"""The local stack: PostgreSQL, NATS (JetStream), Valkey and Temporal under one root folder.

Used by `saas dev` and by the test session. Data lives under the root and survives restarts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from saas.devstack.servers import postgres
from saas.devstack.servers.base import Server, StackError, free_port, port_is_free
from saas.devstack.servers.nats import NatsLogins, nats_logins, nats_server
from saas.devstack.servers.temporal import temporal_server
from saas.devstack.servers.valkey import valkey_server

SERVERS = ("postgres", "nats", "valkey", "temporal")


@dataclass
class StackPorts:
    postgres: int = 15432
    nats: int = 14222
    nats_monitor: int = 18222
    valkey: int = 16379
    temporal: int = 17233
    temporal_ui: int = 18233

    @classmethod
    def from_env(cls) -> StackPorts:
        """The defaults, each movable with `DEVSTACK_<NAME>_PORT`."""
        ports = cls()
        for name in ports.__dataclass_fields__:
            if value := os.environ.get(f"DEVSTACK_{name.upper()}_PORT"):
                setattr(ports, name, int(value))
        return ports

    @classmethod
    def ephemeral(cls) -> StackPorts:
        return cls(*(free_port() for _ in range(6)))


class EmbeddedStack:
    """The servers under `root`, on `ports`."""

    def __init__(
        self,
        root: Path,
        ports: StackPorts | None = None,
        *,
        temporal_ui: bool = True,
        durable: bool = True,
    ):
        self.root = root.resolve()
        self.ports = ports or StackPorts()
        self.temporal_ui = temporal_ui
        self.durable = durable  # tests trade fsync for speed
        self.servers: list[Server] = []

    # -- connection settings ------------------------------------------------------------------
    def nats_logins(self) -> NatsLogins:
        """Each NATS user's URL: a process gets its own, tools `dev` or `ops`."""
        return nats_logins(self.root, self.ports.nats)

    def env(self) -> dict[str, str]:
        """Where each server is. DATABASE_URL is the superuser's: callers create the logins with
        it (`saas.devstack.database.set_up_logins`) and give each process its own. NATS_URL is
        the operators' user (`nats_logins` has everyone's)."""
        p = self.ports
        env = {
            "DATABASE_URL": postgres.admin_url(self.root, p.postgres),
            "NATS_URL": self.nats_logins().ops_url,
            "REDIS_URL": f"redis://127.0.0.1:{p.valkey}/0",
            "TEMPORAL_HOST": f"127.0.0.1:{p.temporal}",
        }
        if self.temporal_ui:
            env["TEMPORAL_UI_URL"] = f"http://127.0.0.1:{p.temporal_ui}"
        return env

    # -- lifecycle ------------------------------------------------------------------------------
    def _make(self, name: str) -> Server:
        p, root = self.ports, self.root
        if name == "postgres":
            return postgres.postgres_server(root, p.postgres, durable=self.durable)
        if name == "nats":
            return nats_server(root, p.nats, p.nats_monitor)
        if name == "valkey":
            return valkey_server(root, p.valkey, durable=self.durable)
        return temporal_server(root, p.temporal, p.temporal_ui if self.temporal_ui else None)

    def start(self, timeout: float = 60.0, *, only: set[str] | None = None) -> None:
        """Start the servers (all, or those named in `only`) and wait until each answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.servers = [self._make(name) for name in SERVERS if only is None or name in only]
        taken = [
            f"{s.name} port {p} ({k})"
            for s in self.servers
            for k, p in s.ports.items()
            if not port_is_free(p)
        ]
        if taken:
            raise StackError(
                "cannot start the local stack, ports already in use: "
                + ", ".join(taken)
                + ". Stop whatever holds them (another `saas dev`?), or choose other ports with"
                " DEVSTACK_<SERVER>_PORT, or point DATABASE_URL/NATS_URL/REDIS_URL/TEMPORAL_HOST at running servers."
            )
        try:
            for server in self.servers:
                server.start()
            self._wait_ready(timeout)
            for server in self.servers:
                if server.after_start is not None:
                    server.after_start()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.servers)
        while pending:
            for server in list(pending):
                assert server.process is not None
                if server.process.poll() is not None:
                    raise StackError(
                        f"{server.name} exited with code {server.process.returncode} while starting; "
                        f"its log ({server.log_path}) ends with:\n{server.log_tail()}"
                    )
                if server.ready():
                    pending.remove(server)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.name for s in pending)
                raise StackError(f"{names} not ready after {timeout:.0f}s; logs are in {self.root}")
            if pending:
                time.sleep(0.1)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
