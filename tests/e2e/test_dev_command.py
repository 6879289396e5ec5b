"""`saas dev` as a developer runs it: the whole stack up, status green, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from saas.common.cli import discover_processes
from saas.devstack.servers import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("POSTGRES", "NATS", "NATS_MONITOR", "VALKEY", "TEMPORAL", "TEMPORAL_UI")


def dev_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "NATS_URL", "REDIS_URL", "TEMPORAL_HOST")
    }
    env.update({f"DEVSTACK_{name}_PORT": str(free_port()) for name in SERVERS})
    env.update({spec.port_env: str(free_port()) for spec in discover_processes()})
    env.update(
        {s.public.port_env: str(free_port()) for s in discover_processes() if s.public is not None}
    )
    env.update(extra)
    return env


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def logins_by_process(processes: list[psutil.Process]) -> dict[str, str | None]:
    """The database login each service process was given, and that it was given no other."""
    logins: dict[str, str | None] = {}
    for process in processes:
        command = process.cmdline()
        if "saas.common.cli" not in command:
            continue
        env = process.environ()
        assert not {"DATABASE_ADMIN_URL", "AUDIT_DATABASE_URL", "MIGRATE_DATABASE_URL"} & set(env)
        url = env.get("DATABASE_URL")
        logins[command[-1]] = url.split("//", 1)[1].split(":", 1)[0] if url else None
    return logins


def test_saas_dev_runs_everything_and_ctrl_c_stops_everything(tmp_path):
    root = tmp_path / "devstack"
    proc = subprocess.Popen(
        [sys.executable, "-m", "saas.common.cli", "dev", "--root", str(root)],
        cwd=ROOT,
        env=dev_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        while not (root / "env").exists():
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.monotonic() - started < 120, "saas dev not ready within 120s"
            time.sleep(0.5)
        settings = read_env(root / "env")
        for key in (
            "GATEWAY_URL",
            "DATABASE_URL",
            "NATS_URL",
            "REDIS_URL",
            "TEMPORAL_HOST",
            "TEMPORAL_UI_URL",
            "GATEWAY_OPS_URL",
            "IDENTITY_OPS_URL",
            "TENANCY_OPS_URL",
            "AUDIT_OPS_URL",
            "TENANCY_WORKER_OPS_URL",
            "DATABASE_ADMIN_URL",
            "AUDIT_DATABASE_URL",
        ):
            assert settings.get(key), key
        assert "saas_migrate:" in settings["DATABASE_URL"]  # tools migrate as the owner
        gateway = settings["GATEWAY_URL"]
        assert httpx.get(settings["GATEWAY_OPS_URL"] + "/health/ready").status_code == 200
        assert settings["GATEWAY_OPS_URL"] != gateway
        status = httpx.get(gateway + "/api/v1/status", timeout=10).json()
        assert status["status"] == "ok", status
        assert httpx.get(settings["TEMPORAL_UI_URL"], timeout=10).status_code < 500
        assert (root / "mail").is_dir()
        assert (root / "postgres" / "PG_VERSION").exists()

        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 9  # four servers and five service processes, at least
        assert logins_by_process(descendants) == {
            "gateway": None,
            "identity": "saas_identity",
            "tenancy": "saas_tenancy",
            "tenancy-worker": "saas_tenancy",
            "audit": "saas_audit",
        }
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode()[-3000:]
        assert f"gateway ops  {settings['GATEWAY_OPS_URL']}/health/ready".encode() in output
        gone, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, f"left running: {[p.pid for p in alive]}"
        assert b"Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_saas_dev_says_which_port_is_taken(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "saas.common.cli", "dev", "--root", str(tmp_path / "d")],
            cwd=ROOT,
            env=dev_env(DEVSTACK_NATS_PORT=str(taken)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"nats port {taken}" in result.stderr
    assert "already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
