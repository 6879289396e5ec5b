from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from saas.common.bus import Bus, BusClient
from saas.common.lifecycle import TaskTracker


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
