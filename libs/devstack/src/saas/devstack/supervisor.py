"""Runs the service processes that installed services declare, and stops them in order.

Services declare their processes in the `saas.processes` entry-point group (`ProcessSpec`, in
`saas.common.cli`), so `saas dev` and the end-to-end tests start whatever is installed without
naming a service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from saas.common.cli import ProcessSpec
from saas.common.db_roles import LOGINS
from saas.devstack.servers.base import StackError, die_with_parent, port_is_free


@dataclass
class Child:
    spec: ProcessSpec
    port: int  # the ops port
    log_path: Path | None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    public_port: int | None = None  # the public API's, for a process that has one

    @property
    def url(self) -> str:
        """The ops endpoints: /health, /health/ready, /metrics."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_url(self) -> str:
        """The public API (the gateway's); for other processes, their ops URL."""
        port = self.public_port if self.public_port is not None else self.port
        return f"http://127.0.0.1:{port}"

    def urls(self) -> dict[str, str]:
        """The env keys that advertise this process (`.devstack/env`)."""
        urls = {self.spec.url_key: self.url}
        if self.spec.public is not None:
            urls[self.spec.public.url_key] = self.public_url
        return urls


# Database URLs a process must not inherit: each gets only its own login's, as DATABASE_URL.
DATABASE_SECRETS = ("DATABASE_URL", "DATABASE_ADMIN_URL") + tuple(
    key for login in LOGINS for key in (login.url_env, login.password_env)
)


# NATS URLs a process must not inherit: each gets only its own user's, as NATS_URL.
NATS_SECRETS = ("NATS_URL", "NATS_OPS_URL")


class Supervisor:
    """Starts each declared process with the shared environment and its own database login and
    NATS user, waits for readiness, stops them."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        database_urls: Mapping[str, str],
        nats_urls: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """`database_urls` maps each login name to its URL (`DatabaseLogins.urls`); `nats_urls`
        each NATS user to its URL (`NatsLogins.urls`; None: everyone uses the env's NATS_URL,
        as when the developer points at a NATS server of their own)."""
        self.env = env
        self.database_urls = database_urls
        self.nats_urls = nats_urls
        self.log_dir = log_dir
        self.children: list[Child] = []

    def process_env(self, spec: ProcessSpec) -> dict[str, str]:
        """The shared environment without anyone's database secrets, plus the process's own login
        (as in production, where each Deployment mounts only its own Secret key)."""
        env = {k: v for k, v in {**os.environ, **self.env}.items() if k not in DATABASE_SECRETS}
        if spec.database_login is not None:
            if spec.database_login not in self.database_urls:
                raise StackError(f"{spec.name} needs the login {spec.database_login}; none given")
            env["DATABASE_URL"] = self.database_urls[spec.database_login]
        if self.nats_urls is not None:
            env = {k: v for k, v in env.items() if k not in NATS_SECRETS}
            if spec.bus is not None:
                if spec.bus.user not in self.nats_urls:
                    raise StackError(f"{spec.name} needs the NATS user {spec.bus.user}; none given")
                env["NATS_URL"] = self.nats_urls[spec.bus.user]
        return env

    def start(
        self,
        specs: list[ProcessSpec],
        ports: dict[str, int] | None = None,
        public_ports: dict[str, int] | None = None,
    ) -> list[Child]:
        """Start each process on its ops port (`ports`, by name; else the spec's default) and,
        for a process with a public API, its public port (`public_ports`, likewise)."""
        ports, public_ports = ports or {}, public_ports or {}
        planned = [
            Child(
                s,
                ports.get(s.name, s.default_port),
                self._log_path(s),
                public_port=public_ports.get(s.name, s.public.default_port) if s.public else None,
            )
            for s in specs
        ]
        taken = [f"{c.spec.name} port {c.port}" for c in planned if not port_is_free(c.port)]
        taken += [
            f"{c.spec.name} public port {c.public_port}"
            for c in planned
            if c.public_port is not None and not port_is_free(c.public_port)
        ]
        if taken:
            raise StackError(
                "cannot start the services, ports already in use: "
                + ", ".join(taken)
                + ". Stop whatever holds them (another `saas dev`?), or set GATEWAY_PORT / GATEWAY_OPS_PORT / <SERVICE>_OPS_PORT."
            )
        for child in planned:
            env = {
                **self.process_env(child.spec),
                child.spec.port_env: str(child.port),
                "OPS_PORT": str(child.port),
            }
            if child.spec.public is not None and child.public_port is not None:
                env[child.spec.public.port_env] = str(child.public_port)
            out = open(child.log_path, "ab") if child.log_path else None  # noqa: SIM115 - the child keeps it
            child.process = subprocess.Popen(
                [sys.executable, "-m", "saas.common.cli", "run", child.spec.name],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509
            )
            if out:
                out.close()
            self.children.append(child)
        return self.children

    def _log_path(self, spec: ProcessSpec) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{spec.name}.log"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.children)
        while pending:
            for child in list(pending):
                assert child.process is not None
                if child.process.poll() is not None:
                    where = f"; see {child.log_path}" if child.log_path else ""
                    raise StackError(
                        f"{child.spec.name} exited with code {child.process.returncode} while starting{where}"
                    )
                if _ready(child.url):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.spec.name for c in pending)
                raise StackError(f"not ready after {timeout:.0f}s: {names}")
            if pending:
                time.sleep(0.2)

    def exited(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.process.poll() is not None]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM in reverse start order (the gateway first), waiting for each start-order group,
        so no service goes away while a process in front of it still drains requests into it."""
        deadline = time.monotonic() + timeout
        for order in sorted({c.spec.order for c in self.children}, reverse=True):
            group = [c for c in self.children if c.spec.order == order and c.process is not None]
            for child in group:
                if child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            for child in group:
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait(5)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health/ready", timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False
