"""The real processes, started as `saas dev` starts them, answering through the gateway."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from saas.common.cli import discover_processes
from saas.devstack.servers import free_port
from saas.devstack.supervisor import Child, Supervisor

pytestmark = pytest.mark.e2e
SERVICES = {"identity", "tenancy", "audit", "tenancy-worker"}


@pytest.fixture(scope="module")
def running(stack, tmp_path_factory) -> Iterator[dict[str, Child]]:
    env = {
        **stack.env(),
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
        "ACCESS_LOG": "all",
    }
    supervisor = Supervisor(
        env,
        database_urls=stack.database_urls,
        nats_urls=stack.nats_urls,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    specs = discover_processes()
    children = supervisor.start(
        specs,
        {s.name: free_port() for s in specs},
        {s.name: free_port() for s in specs if s.public},
    )
    try:
        supervisor.wait_ready(timeout=90)
        yield {c.spec.name: c for c in children}
    finally:
        supervisor.stop()
        for child in children:
            assert child.process is not None and child.process.poll() is not None, (
                f"{child.spec.name} still running"
            )


@pytest.fixture(scope="module")
def gateway(running) -> Iterator[httpx.Client]:
    """The public API."""
    with httpx.Client(base_url=running["gateway"].public_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def gateway_ops(running) -> Iterator[httpx.Client]:
    """The gateway's ops port: probes, metrics, the detailed status."""
    with httpx.Client(base_url=running["gateway"].url, timeout=10) as client:
        yield client


def test_every_declared_process_is_started(running):
    assert set(running) == SERVICES | {"gateway"}


def test_gateway_is_ready_with_its_dependencies(gateway_ops):
    response = gateway_ops.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "nats": "connected", "redis": "connected"}


def test_the_ops_endpoints_are_not_on_the_public_port(gateway, gateway_ops):
    for path in ("/metrics", "/status"):
        assert gateway.get(path).status_code == 404, path
        assert gateway_ops.get(path).status_code == 200, path
    assert gateway_ops.get("/api/v1/status").status_code == 404
    # Load balancers may probe the API port: the same statuses, never the errors' texts.
    for path in ("/health", "/health/ready"):
        public, ops = gateway.get(path), gateway_ops.get(path)
        assert public.status_code == ops.status_code == 200, path
        assert public.json()["status"] == ops.json()["status"]
        assert "errors" not in public.json() and "waiting_for" not in public.json()


def test_each_service_reports_its_own_dependencies(running):
    expected = {
        "identity": {"database", "nats"},
        "audit": {"database", "nats"},
        "tenancy": {"database", "nats", "temporal"},
        "tenancy-worker": {"database", "nats", "temporal"},
    }
    for name, deps in expected.items():
        body = httpx.get(running[name].url + "/health/ready").json()
        assert body["status"] == "ready", body
        assert {k for k, v in body.items() if v == "connected"} == deps
        assert httpx.get(running[name].url + "/health").json()["status"] == "healthy"


def test_status_asks_every_service_over_nats_and_shows_the_public_no_hosts(gateway):
    body = gateway.get("/api/v1/status").json()
    assert body["status"] == "ok"
    assert set(body["services"]) == SERVICES
    assert body["services"]["identity"] == {"status": "up"}
    assert str(os.getpid()) not in json.dumps(body)


def test_operators_see_versions_replicas_and_round_trips_on_the_ops_port(gateway_ops):
    body = gateway_ops.get("/status").json()
    assert body["status"] == "ok" and set(body["services"]) == SERVICES
    for name, service in body["services"].items():
        assert service["status"] == "up", name
        assert service["version"] == "0.1.0"
        assert service["rtt_ms"] > 0
        assert service["instance"].rsplit(":", 1)[1].isdigit()  # host:pid


def test_request_id_is_kept_or_made(gateway):
    kept = gateway.get("/api/v1/status", headers={"X-Request-Id": "trace-abc.123"})
    assert kept.headers["x-request-id"] == "trace-abc.123"
    replaced = gateway.get(
        "/api/v1/status", headers={"X-Request-Id": "bad id\twith junk" + "x" * 200}
    )
    assert replaced.headers["x-request-id"] != "bad id\twith junk"
    assert len(replaced.headers["x-request-id"]) == 32


def test_unknown_route_is_a_problem_document(gateway):
    response = gateway.get("/api/v1/nope", headers={"X-Request-Id": "req-404"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found" and body["status"] == 404
    assert body["instance"] == "/api/v1/nope"
    assert body["request_id"] == "req-404"


def test_wrong_method_is_a_problem_document(gateway):
    response = gateway.post("/api/v1/status")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_gateway_metrics_time_requests_by_route_and_status(gateway, gateway_ops):
    gateway.get("/api/v1/status")
    gateway.get("/api/v1/nope")
    text = gateway_ops.get("/metrics").text
    assert (
        'saas_api_request_duration_seconds_count{method="GET",route="/api/v1/status",status="200"}'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert (
        'saas_bus_client_request_seconds_count{operation="ping",outcome="ok",service="identity"}'
        in text
    )


def test_gateway_logs_each_request_as_json_with_its_request_id(gateway, running):
    gateway.get("/api/v1/status", headers={"X-Request-Id": "log-me-1"})
    log_path = running["gateway"].log_path

    def logged() -> list[dict]:
        lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
        return [e for e in lines if e.get("request_id") == "log-me-1" and e["message"] == "request"]

    deadline = time.monotonic() + 5  # the line is written once the response has gone out
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = logged()
    assert (
        line["service"] == "gateway" and line["status"] == 200 and line["path"] == "/api/v1/status"
    )
    assert line["ip_address"] == "127.0.0.1" and line["level"] == "info" and line["timestamp"]


def test_openapi_document_lists_the_api(gateway):
    paths = gateway.get("/openapi.json").json()["paths"]
    assert "/api/v1/status" in paths


def test_a_stopped_service_shows_as_down(gateway, gateway_ops, running):
    audit = running["audit"]
    assert audit.process is not None
    audit.process.terminate()
    assert audit.process.wait(timeout=30) == 0
    body = gateway.get("/api/v1/status").json()
    assert body["status"] == "degraded"
    assert body["services"]["audit"] == {"status": "down"}
    assert body["services"]["identity"]["status"] == "up"
    detailed = gateway_ops.get("/status").json()
    assert detailed["services"]["audit"]["error"] == "service_unavailable"


def test_no_process_outlives_the_supervisor(running):
    # Checked for real in the fixture's teardown; here: every child is a live process right now.
    for child in running.values():
        if child.spec.name != "audit":
            assert child.process is not None and psutil.pid_exists(child.process.pid)
