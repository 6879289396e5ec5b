"""Readiness checks each dependency for real and names the one that is down."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy

from saas.common.process import ServiceProcess
from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TemporalSettings,
)


class EverythingSettings(DatabaseSettings, BusSettings, RedisSettings, TemporalSettings):
    """A process that uses every kind of server."""


class DatabaseAndBusSettings(DatabaseSettings, BusSettings):
    pass


async def probe(process: ServiceProcess, path: str) -> httpx.Response:
    app = process.create_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ops"
    ) as http:
        return await http.get(path)


@pytest.fixture
async def started():
    processes: list[ServiceProcess] = []

    async def start(settings: Settings) -> ServiceProcess:
        process = ServiceProcess("probe", "9.9.9", settings)
        await process.start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        await process.stop()


async def test_ready_when_every_dependency_answers(stack, started):
    process = await started(EverythingSettings.load())
    response = await probe(process, "/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "database": "connected",
        "nats": "connected",
        "redis": "connected",
        "temporal": "connected",
    }


async def test_health_reports_version(stack, started):
    process = await started(BusSettings.load())
    response = await probe(process, "/health")
    assert response.json() == {"status": "healthy", "version": "9.9.9"}


async def test_not_ready_names_the_failing_dependency(stack, started):
    dead_db = "postgresql+asyncpg://postgres@127.0.0.1:9/saas"  # nothing listens on port 9
    process = await started(
        DatabaseAndBusSettings.load(database_url=dead_db, health_check_timeout=1.0)
    )
    response = await probe(process, "/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["database"] == "disconnected"
    assert body["nats"] == "connected"
    assert "database" in body["errors"] and "nats" not in body["errors"]


async def test_metrics_are_exposed_in_prometheus_format(stack, started):
    process = await started(BusSettings.load())
    process.metrics.counter("widgets_total", "Widgets made").inc(3)
    response = await probe(process, "/metrics")
    assert response.status_code == 200
    assert "saas_widgets_total 3.0" in response.text
    assert "process_resident_memory_bytes" in response.text


async def test_draining_process_is_not_ready(stack, started):
    process = await started(BusSettings.load())
    process.health.draining = True
    response = await probe(process, "/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"


async def test_the_connection_pool_in_use_is_a_metric(stack, started):
    class Pooled(DatabaseSettings, BusSettings):
        pass

    process = await started(Pooled.load(db_pool_size=2, db_max_overflow=2))
    await process.warming  # its two connections are opened, and given back
    async with process.db.session() as session:  # one of four connections held
        await session.execute(sqlalchemy.text("SELECT 1"))
        text = (await probe(process, "/metrics")).text
    assert "saas_database_connection_pool_usage 0.25" in text
    assert "saas_database_connection_pool_size 4.0" in text


class Pooled(DatabaseSettings, BusSettings):
    pass


async def _connections_of(db, name: str) -> int:
    async with db.session() as session:
        found = await session.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
            {"n": name},
        )
        return found.scalar_one()


async def test_a_process_opens_its_pool_as_it_starts_and_keeps_the_connections(stack, started, db):
    process = await started(Pooled.load(db_pool_size=5, db_pool_min=3))
    await process.warming
    pool = process.db.engine.pool
    assert (pool.checkedin(), pool.checkedout()) == (3, 0)
    assert await _connections_of(db, "probe") == 3  # open at the server, not only counted
    for _ in range(5):  # work reuses them: nothing more is opened
        async with process.db.session() as session:
            await session.execute(sqlalchemy.text("SELECT 1"))
    assert await _connections_of(db, "probe") == 3


async def test_the_pool_opens_no_more_than_its_size_and_none_when_told_so(stack, started, db):
    process = await started(Pooled.load(db_pool_size=2, db_pool_min=50))
    await process.warming
    assert process.db.engine.pool.checkedin() == 2
    await process.stop()
    assert await _connections_of(db, "probe") == 0  # the pool's connections close at stop
    process = await started(Pooled.load(db_pool_min=0))
    await process.warming
    assert process.db.engine.pool.checkedin() == 0


async def test_a_database_that_is_not_there_does_not_hold_up_the_start(stack, started):
    dead_db = "postgresql+asyncpg://postgres@127.0.0.1:9/saas"  # nothing listens on port 9
    process = await started(Pooled.load(database_url=dead_db, health_check_timeout=1.0))
    assert process.health.started  # the responder is up; readiness tells the rest
    await process.warming  # it failed, and said so, without raising
    assert (await probe(process, "/health/ready")).json()["database"] == "disconnected"
