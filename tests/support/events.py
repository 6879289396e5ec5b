"""Fixtures' helpers for event tests: a private NATS server and scratch schemas with an outbox."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

from alembic.migration import MigrationContext
from alembic.operations import Operations
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select, text

from saas.common.bus import Bus
from saas.common.db import Database
from saas.common.events import Actor, EventEnvelope, new_event, parse_event
from saas.common.events.catalogue import MembershipAdded, ProjectCreated
from saas.common.events.outbox import Outbox
from saas.common.events.stream import EVENTS_STREAM, apply_streams
from saas.common.events.tables import (
    create_consumer_failures_v1,
    create_outbox_v1,
    create_processed_v1,
    upgrade_outbox_v2,
)
from saas.common.settings import EventSettings
from saas.devstack.servers import EmbeddedStack
from tests.support.servers import PrivateServer


class PrivateNats(PrivateServer):
    """A NATS server of the test's own, which the test may stop and start again (same port, same data)."""

    kind = "nats"

    @property
    def url(self) -> str:
        """The operators' user: tests may do anything."""
        return self.urls()["ops"]

    def urls(self, port: int | None = None) -> dict[str, str]:
        """Each user's URL, optionally through another port (a proxy in front of the server)."""
        urls = EmbeddedStack(self.root, self.ports).nats_logins().urls
        if port is None:
            return urls
        return {u: url.replace(f":{self.ports.nats}", f":{port}") for u, url in urls.items()}


def configure_streams(url: str) -> None:
    """What `saas migrate` does to a NATS server before services use it: the streams."""

    async def apply() -> None:
        bus = await connect(url, "streams")
        await bus.close()

    asyncio.run(apply())


async def connect(url: str, name: str = "tests") -> Bus:
    bus = Bus(url, name=name)
    await bus.connect()
    await apply_streams(bus.js, EventSettings.load())
    return bus


async def scratch_schema(db: Database) -> str:
    """A fresh schema with an outbox, processed_events and consumer_failures, as a service's
    migrations make them."""
    schema = f"scratch_{uuid.uuid4().hex[:10]}"
    async with db.engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))

        def ddl(sync_conn) -> None:
            op = Operations(MigrationContext.configure(sync_conn))
            create_outbox_v1(op, schema)
            upgrade_outbox_v2(op, schema)
            create_processed_v1(op, schema)
            create_consumer_failures_v1(op, schema)

        await conn.run_sync(ddl)
    return schema


def member_event(tenant: str, n: int) -> EventEnvelope:
    """An event identity may publish, whose payload carries its position (`user_id`)."""
    return new_event(
        MembershipAdded(tenant_id=tenant, user_id=f"{tenant}:{n}", role="member"),
        source="saas/tests",
        actor=Actor.user("u-1"),
        tenant_id=tenant,
    )


def project_event(tenant: str, n: int) -> EventEnvelope:
    """An event whose payload carries its position, so tests can check order per tenant."""
    return new_event(
        ProjectCreated(tenant_id=tenant, project_id=f"{tenant}:{n}", name=f"p{n}"),
        source="saas/tests",
        actor=Actor.user("u-1"),
        tenant_id=tenant,
    )


async def write_events(
    db: Database, outbox: Outbox, events: list[EventEnvelope], per_tx: int = 50
) -> None:
    for i in range(0, len(events), per_tx):
        async with db.session() as session:
            await outbox.add(session, *events[i : i + per_tx])


async def read_stream(bus, tenant_prefix: str = "") -> list:
    """Every event in the EVENTS stream, in stream order."""
    info = await bus.js.stream_info(EVENTS_STREAM)
    total = info.state.messages
    if total == 0:
        return []
    sub = await bus.js.pull_subscribe(
        "",
        stream=EVENTS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, filter_subjects=["project.>"]),
    )
    out = []
    while len(out) < total:
        try:
            msgs = await sub.fetch(min(500, total - len(out)), timeout=2)
        except Exception:
            break
        for m in msgs:
            out.append(parse_event(m.data))
            await m.ack()
    await sub.unsubscribe()
    return [e for e in out if (e.tenant_id or "").startswith(tenant_prefix)]


def assert_in_order_per_tenant(events) -> None:
    positions: dict[str, list[int]] = defaultdict(list)
    for e in events:
        positions[e.tenant_id].append(int(e.data["project_id"].split(":")[1]))
    for tenant, seen in positions.items():
        assert seen == sorted(seen), f"{tenant} out of order"


async def unsent(db: Database, outbox: Outbox) -> int:
    async with db.session() as session:
        return (
            await session.execute(select(func.count()).where(outbox.table.c.sent_at.is_(None)))
        ).scalar_one()
