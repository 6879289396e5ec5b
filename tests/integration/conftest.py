from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from saas.common.bus import Bus, BusClient
from saas.common.lifecycle import TaskTracker
from tests.support.events import PrivateNats


@pytest.fixture
async def bus(stack) -> AsyncIterator[Bus]:
    bus = Bus(stack.nats_url, name="tests")
    await bus.connect()
    yield bus
    await bus.close()


@pytest.fixture
def client(bus: Bus) -> BusClient:
    return BusClient(bus, timeout=1.0)


@pytest.fixture
async def tasks() -> AsyncIterator[TaskTracker]:
    tracker = TaskTracker()
    yield tracker
    await tracker.drain(5)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def nats_server(tmp_path):
    """A NATS server of the test's own, which it may stop and start again."""
    server = PrivateNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()
