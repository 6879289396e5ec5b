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


@pytest.fixture(scope="module")
async def identity(stack, tmp_path_factory):
    """The identity process, running in this test session's loop against the real servers, with
    small lockout numbers so tests reach them quickly."""
    from saas.common.db import Database
    from saas.common.settings import DatabaseSettings
    from saas.identity.main import IdentitySettings, wire
    from tests.support.identity import Identity

    mail_dir = tmp_path_factory.mktemp("mail")
    settings = IdentitySettings.load(
        mail_dir=mail_dir,
        outbox_poll_interval=0.2,
        login_failures_before_lock=3,
        login_lock_seconds=1.0,
        login_lock_max_seconds=2.0,
        address_failures_limit=10,
    )
    process, deps = wire(settings)
    await process.start()
    client_bus = Bus(stack.nats_url, name="identity-tests")
    await client_bus.connect()
    db = Database.from_settings(DatabaseSettings.load())
    yield Identity(process, deps, BusClient(client_bus, timeout=10), mail_dir, db)
    await db.dispose()
    await client_bus.close()
    await process.stop()
