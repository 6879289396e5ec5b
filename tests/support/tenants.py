"""Helpers for tests of tenants through the real processes: events as JetStream holds them,
waiting for a tenant's status, the database as an administrator sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import text

from saas.common.bus import Bus
from saas.common.db import Database
from saas.common.events import EventEnvelope, parse_event
from saas.common.events.stream import EVENTS_STREAM
from saas.common.settings import DatabaseSettings

T = TypeVar("T")


async def events_since(nats_url: str, subject: str, since: datetime) -> list[EventEnvelope]:
    """Every event on `subject` that JetStream stored at or after `since`, in stream order."""
    bus = Bus(nats_url, name="tests-events")
    await bus.connect()
    try:
        sub = await bus.js.pull_subscribe(
            "",
            stream=EVENTS_STREAM,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=since,
                filter_subjects=[subject],
            ),
        )
        found: list[EventEnvelope] = []
        while True:
            try:
                messages = await sub.fetch(500, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                break
            for message in messages:
                found.append(parse_event(message.data))
                await message.ack()
        await sub.unsubscribe()
        return found
    finally:
        await bus.close()


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60.0, every: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not after {timeout}s"
        time.sleep(every)


def announced(nats_url: str, type_: str, tenant_id: str, since: datetime) -> list[EventEnvelope]:
    """The events of a type about one tenant, stored since a moment."""
    found = asyncio.run(events_since(nats_url, type_, since))
    return [e for e in found if e.tenant_id == tenant_id]


def sql(statement: str, **params: Any) -> list[tuple]:
    """One statement as the database's administrator (`DATABASE_URL` in the test session)."""

    async def run() -> list[tuple]:
        db = Database.from_settings(DatabaseSettings.load())
        try:
            async with db.session() as session:
                result = await session.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            await db.dispose()

    return asyncio.run(run())
