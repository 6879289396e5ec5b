"""The real processes on a bad day for NATS: frozen, restarted, cut off. Each comes back by itself.

Something polls every process's /health/ready the whole time, as a kubelet does (that polling is
what turned a NATS pause into services deaf for good). After each fault every service must
answer over the bus again within seconds, without a restart, and its readiness must agree.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from saas.common.bus import Bus, BusClient
from saas.common.bus.requests import Empty
from saas.common.cli import discover_processes
from saas.common.contracts.system import PingReply
from saas.common.errors import ServiceError
from saas.devstack.servers import free_port
from saas.devstack.supervisor import Child, Supervisor
from tests.support.events import configure_streams
from tests.support.netcut import NetCut

pytestmark = pytest.mark.e2e
SERVICES = ("identity", "tenancy", "audit")
RECOVERY_SECONDS = 20


@dataclass
class Prober:
    """Polls /health/ready of every process every half second, like a kubelet."""

    urls: dict[str, str]
    seen: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Prober:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=3) as http:
            while not self._stop.is_set():
                for name, url in self.urls.items():
                    try:
                        status = http.get(url + "/health/ready").status_code
                    except httpx.HTTPError:
                        status = 0
                    self.seen.setdefault(name, []).append((time.monotonic(), status))
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Running:
    children: dict[str, Child]
    nats_url: str  # the server itself; the services reach it through `proxy`
    proxy: NetCut

    def ops(self, name: str) -> str:
        return self.children[name].url


@pytest.fixture
def running(stack, nats_server, tmp_path) -> Iterator[Running]:
    configure_streams(nats_server.url)
    proxy = NetCut(nats_server.ports.nats).start()
    env = {
        **stack.env(),
        "NATS_URL": proxy.url(),
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "HEALTH_CHECK_TIMEOUT": "1",
        "MIGRATIONS_DIR": os.environ["MIGRATIONS_DIR"],
    }
    specs = [s for s in discover_processes() if s.name in SERVICES]
    supervisor = Supervisor(
        env,
        database_urls=stack.database_urls,
        nats_urls=nats_server.urls(port=proxy.port),
        log_dir=tmp_path / "logs",
    )
    children = supervisor.start(specs, {s.name: free_port() for s in specs})
    try:
        supervisor.wait_ready(60)
        yield Running({c.spec.name: c for c in children}, nats_server.url, proxy)
    finally:
        supervisor.stop()
        proxy.stop()


async def answering(nats_url: str, names: tuple[str, ...]) -> set[str]:
    """Which services answer a ping over the bus right now."""
    bus = Bus(nats_url, "fault-test")
    await bus.connect()
    try:
        client = BusClient(bus, timeout=1)

        async def ping(name: str) -> str | None:
            try:
                await client.request(name, "ping", Empty(), PingReply)
                return name
            except ServiceError:
                return None

        return {n for n in await asyncio.gather(*(ping(n) for n in names)) if n}
    finally:
        await bus.close()


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/health/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


async def assert_everyone_back(running: Running, started: float) -> None:
    """Every service answers over the bus and reports ready, within RECOVERY_SECONDS."""
    deadline = started + RECOVERY_SECONDS
    back: set[str] = set()
    while time.monotonic() < deadline:
        back = await answering(running.nats_url, SERVICES)
        if back == set(SERVICES) and all(ready(running.ops(n)) for n in SERVICES):
            break
        await asyncio.sleep(0.5)
    assert back == set(SERVICES), f"still deaf after {RECOVERY_SECONDS}s: {set(SERVICES) - back}"
    # Readiness tells the truth: anyone ready now also answers (checked once more, after a pause).
    await asyncio.sleep(2)
    for name in SERVICES:
        assert ready(running.ops(name)), name
    assert await answering(running.nats_url, SERVICES) == set(SERVICES)


async def test_services_come_back_after_nats_is_frozen_while_probed(running, nats_server):
    prober = Prober({n: running.ops(n) for n in SERVICES}).start()
    try:
        await asyncio.sleep(1)
        nats_server.pause()
        await asyncio.sleep(5)
        nats_server.resume()
        await assert_everyone_back(running, time.monotonic())
    finally:
        prober.stop()
    for name in SERVICES:  # the probes noticed: not ready at some point during the freeze
        assert any(status != 200 for _, status in prober.seen[name]), name


async def test_services_come_back_after_nats_restarts(running, nats_server):
    prober = Prober({n: running.ops(n) for n in SERVICES}).start()
    try:
        nats_server.stop()
        await asyncio.sleep(3)
        nats_server.start()
        await assert_everyone_back(running, time.monotonic())
    finally:
        prober.stop()


async def test_services_come_back_after_the_network_is_cut(running):
    proxy = running.proxy
    prober = Prober({n: running.ops(n) for n in SERVICES}).start()
    try:
        proxy.cut()
        await asyncio.sleep(3)
        assert not any(ready(running.ops(n)) for n in SERVICES)  # cut off: not ready
        proxy.mend()
        await assert_everyone_back(running, time.monotonic())
    finally:
        prober.stop()


async def test_services_come_back_after_a_silent_partition(running):
    proxy = running.proxy
    prober = Prober({n: running.ops(n) for n in SERVICES}).start()
    try:
        proxy.blackhole()
        await asyncio.sleep(6)
        assert not any(ready(running.ops(n)) for n in SERVICES)  # no answer: not ready
        proxy.mend()
        await assert_everyone_back(running, time.monotonic())
    finally:
        prober.stop()
