"""What every embedded server shares: how it runs as a child process, and the port helpers.

Each server runs as a child process in its own session (so a terminal's Ctrl-C reaches only the
supervisor, which stops things in order) and with a parent-death signal (so nothing outlives a
supervisor that is killed outright).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


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


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:  # noqa: S310 - loopback only
            return response.status == 200
    except OSError:
        return False


def venv_binary(name: str) -> Path:
    """A command installed by a wheel into this interpreter's environment (or on PATH)."""
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


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            f"{package} is not installed; run `make dev` or `uv sync` to install the development servers"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass
class Server:
    """One embedded server: how to run it, its ports, its log, and how to tell it is ready."""

    name: str
    argv: list[str]
    ports: dict[str, int]
    log_path: Path
    ready: Callable[[], bool]
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    cwd: Path | None = None
    after_start: Callable[[], None] | None = None  # one-time set-up once it answers
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
