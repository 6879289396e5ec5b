"""A process whose servers are unreachable answers /health, says it is not ready, keeps trying,
and stops at once on SIGTERM, at any moment of its life."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from saas.common.cli import discover_processes
from saas.devstack.servers import free_port
from tests.support.events import configure_streams

pytestmark = pytest.mark.e2e
NOWHERE = "127.0.0.1:9"  # nothing listens on the discard port


def start(stack, process: str, **env: str) -> tuple[subprocess.Popen, str]:
    """The process as `saas dev` would run it: its own database login only."""
    (spec,) = [s for s in discover_processes() if s.name == process]
    if spec.database_login:
        env = {"DATABASE_URL": stack.database_url(spec.database_login), **env}
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "saas.common.cli", "run", process],
        env={
            **os.environ,
            "APP_ENV": "test",
            "LOG_FORMAT": "json",
            "OPS_PORT": str(port),
            "GATEWAY_PORT": str(free_port()),  # the gateway's API, beside its ops port
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return child, f"http://127.0.0.1:{port}"


def wait_for_health(url: str, child: subprocess.Popen, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert child.poll() is None, child.stdout.read().decode()[-2000:]
        try:
            return httpx.get(url + "/health", timeout=1)
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url}/health never answered")


def stop_promptly(child: subprocess.Popen, within: float = 5.0) -> str:
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    try:
        output, _ = child.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError(f"still running {within}s after SIGTERM") from None
    assert child.returncode == 0, output.decode()[-2000:]
    assert time.monotonic() - started < within
    return output.decode()


@pytest.mark.parametrize("process", ["identity", "audit", "gateway"])
def test_unreachable_nats_at_start_up_is_waited_for_and_sigterm_still_stops_it(stack, process):
    child, url = start(stack, process, NATS_URL=f"nats://{NOWHERE}")
    try:
        assert wait_for_health(url, child).json()["status"] == "healthy"
        ready = httpx.get(url + "/health/ready", timeout=5)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "starting" and body["nats"] == "disconnected"
        assert body["waiting_for"].startswith("nats")
        time.sleep(1.5)  # a few retries, with backoff
    finally:
        log = stop_promptly(child)
    assert log.count("start-up step failed; retrying") >= 2
    assert "shutdown complete" in log


def test_sigterm_while_waiting_for_temporal_stops_what_had_started(stack):
    child, url = start(stack, "tenancy", TEMPORAL_HOST=NOWHERE)
    try:
        wait_for_health(url, child)
        deadline = time.monotonic() + 15
        while "temporal" not in httpx.get(url + "/health/ready").json().get("waiting_for", ""):
            assert time.monotonic() < deadline, "never waited for temporal"
            time.sleep(0.2)
    finally:
        log = stop_promptly(child)
    assert "shutdown complete" in log and "Application shutdown failed" not in log


def test_a_hanging_dns_lookup_does_not_hold_the_process_at_exit(stack):
    """A reconnect's name lookup runs in a thread; exit must not wait for it."""
    slow_dns = os.path.join(os.path.dirname(__file__), "..", "support", "slow_dns")
    child, url = start(
        stack,
        "audit",
        NATS_URL="nats://nats.dying-cluster.test:4222",
        SLOW_DNS_HOSTS="nats.dying-cluster.test",
        PYTHONPATH=os.path.abspath(slow_dns),
    )
    try:
        wait_for_health(url, child)
        time.sleep(1)  # the lookup is stuck in its thread now
    finally:
        stop_promptly(child, within=5)


def test_a_process_stops_cleanly_when_nats_is_already_gone(stack, nats_server):
    """In Kubernetes NATS may stop at the same moment: closing the bus fails, the rest still closes."""
    configure_streams(nats_server.url)
    child, url = start(stack, "audit", NATS_URL=nats_server.url)
    try:
        wait_for_health(url, child)
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        nats_server.stop()
        time.sleep(0.5)
    finally:
        log = stop_promptly(child, within=10)
    assert "shutdown complete" in log and "Application shutdown failed" not in log
