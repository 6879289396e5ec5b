"""Readiness: ready only when started, every port is bound, nothing required fails, not draining."""

from __future__ import annotations

from saas.common.health import HealthChecks


async def _up() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("refused")


async def test_ready_needs_the_start_and_every_port():
    checks = HealthChecks(version="1")
    checks.add("database", _up)
    assert await checks.readiness() == (False, {"status": "starting", "database": "connected"})
    checks.started = True
    checks.listening = False  # the public port is not bound yet
    ok, doc = await checks.readiness()
    assert not ok and doc["status"] == "starting"
    checks.listening = True
    assert await checks.readiness() == (True, {"status": "ready", "database": "connected"})
    checks.draining = True
    ok, doc = await checks.readiness()
    assert not ok and doc["status"] == "draining"


async def test_a_failing_required_check_is_named_and_an_optional_one_only_reported():
    checks = HealthChecks(version="1", started=True)
    checks.add("redis", _down, required=False)
    ok, doc = await checks.readiness()
    assert ok and doc["redis"] == "disconnected" and "refused" in doc["errors"]["redis"]
    checks.add("database", _down)
    ok, doc = await checks.readiness()
    assert not ok and doc["status"] == "not_ready" and doc["database"] == "disconnected"
