"""The process frame: resources follow the settings, components start, drain and stop in order."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from saas.common.bus import BusClient
from saas.common.bus.requests import Empty
from saas.common.components import Component
from saas.common.contracts.system import PingReply
from saas.common.process import MissingResource, ServiceProcess
from saas.common.settings import BusSettings, DatabaseSettings


class Recorder(Component):
    """Writes what happens to it into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_starts: int = 0) -> None:
        self.name = name
        self.journal = journal
        self.fail_starts = fail_starts

    async def start(self) -> None:
        if self.fail_starts:
            self.fail_starts -= 1
            self.journal.append(f"{self.name}.start failed")
            raise ConnectionError("not yet")
        self.journal.append(f"{self.name}.start")

    async def drain(self) -> None:
        self.journal.append(f"{self.name}.drain")
        await asyncio.sleep(0.2)  # drains overlap: both begin before either ends
        self.journal.append(f"{self.name}.drained")

    async def stop(self) -> None:
        self.journal.append(f"{self.name}.stop")


async def ready_body(process: ServiceProcess) -> tuple[int, dict]:
    transport = httpx.ASGITransport(app=process.create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        response = await http.get("/health/ready")
    return response.status_code, response.json()


async def test_components_start_in_order_drain_together_and_stop_in_reverse(stack):
    journal: list[str] = []
    process = ServiceProcess("frame", "1.0", BusSettings.load())
    first = process.add(Recorder("first", journal))
    process.add(Recorder("second", journal))
    assert process.components == [first, process.components[1]]

    await process.start()
    assert journal == ["first.start", "second.start"]
    await process.stop()
    assert journal[2:4] == ["second.drain", "first.drain"]  # concurrently: neither waits
    assert set(journal[4:6]) == {"first.drained", "second.drained"}
    assert journal[6:] == ["second.stop", "first.stop"]
    assert not process.bus.is_connected


async def test_a_failing_start_is_retried_and_the_process_reports_starting_meanwhile(stack):
    journal: list[str] = []
    process = ServiceProcess("frame", "1.0", BusSettings.load())
    process.add(Recorder("flaky", journal, fail_starts=2))
    starting = process.begin_start()
    await asyncio.sleep(0.1)
    status, body = await ready_body(process)
    assert status == 503 and body["status"] == "starting"
    assert "flaky" in body["waiting_for"] and "not yet" in body["waiting_for"]
    await asyncio.wait_for(starting, timeout=5)
    assert journal == ["flaky.start failed", "flaky.start failed", "flaky.start"]
    status, body = await ready_body(process)
    assert status == 200 and body == {"status": "ready", "nats": "connected"}
    await process.stop()


async def test_requests_are_taken_only_once_every_component_has_started(stack, bus):
    gate = asyncio.Event()

    class Slow(Component):
        name = "slow"

        async def start(self) -> None:
            await gate.wait()

    process = ServiceProcess("gated", "1.0", BusSettings.load())
    process.add(Slow())
    starting = process.begin_start()
    client = BusClient(bus, timeout=0.5)
    with pytest.raises(Exception, match="not available"):
        await client.request("gated", "ping", Empty(), PingReply)
    gate.set()
    await starting
    assert (await client.request("gated", "ping", Empty(), PingReply)).service == "gated"
    await process.stop()


async def test_resources_follow_the_settings(stack):
    process = ServiceProcess("bus-only", "1.0", BusSettings.load())
    with pytest.raises(MissingResource, match="DatabaseSettings"):
        process.db  # noqa: B018
    with pytest.raises(MissingResource, match="RedisSettings"):
        process.redis  # noqa: B018
    assert not process.has_redis

    class Both(DatabaseSettings, BusSettings):
        pass

    both = ServiceProcess("both", "1.0", Both.load())
    assert set(both.health.checks) == {"database", "nats"}
    await both.db.dispose()


async def test_a_nats_client_that_cannot_heal_fails_liveness(stack):
    process = ServiceProcess("liveness", "1.0", BusSettings.load())
    await process.start()
    transport = httpx.ASGITransport(app=process.create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        assert (await http.get("/health")).status_code == 200
        await process.bus.nc.close()  # closed under the process: nats-py will not come back
        response = await http.get("/health")
    assert response.status_code == 503
    assert response.json()["dead"] == ["nats"]
    await process.stop()


async def test_a_dead_read_loop_is_noticed_and_the_client_reconnects(stack):
    """Whatever kills nats-py's read loop, the client must not stay connected and deaf."""
    process = ServiceProcess("deaf", "1.0", BusSettings.load())
    await process.start()
    client = BusClient(process.bus, timeout=1)
    process.bus.nc._reading_task.cancel()  # the read loop ends, the client still says connected
    await asyncio.sleep(3)
    assert (await client.request("deaf", "ping", Empty(), PingReply)).service == "deaf"
    await process.stop()


async def test_stop_during_start_up_stops_what_had_started_and_nothing_else(stack, bus):
    journal: list[str] = []
    never = asyncio.Event()

    class Stuck(Recorder):
        async def start(self) -> None:
            journal.append("stuck.start")
            await never.wait()  # a dependency that never answers

    process = ServiceProcess("halfway", "1.0", BusSettings.load())
    process.add(Recorder("first", journal))
    process.add(Stuck("stuck", journal))
    process.begin_start()
    while "stuck.start" not in journal:  # noqa: ASYNC110 - polling the journal is the point
        await asyncio.sleep(0.01)
    await asyncio.wait_for(process.stop(), timeout=5)
    assert journal == ["first.start", "stuck.start", "first.drain", "first.drained", "first.stop"]
    with pytest.raises(Exception, match="not available"):  # the responder never took requests
        await BusClient(bus, timeout=0.5).request("halfway", "ping", Empty(), PingReply)
