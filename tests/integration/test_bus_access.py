"""The bus is not a trusted network: every client authenticates, each service only does its job.

The embedded NATS runs with production's users and permissions (`saas.common.bus.access`), so
what is refused here is refused in production.
"""

from __future__ import annotations

import asyncio

import nats
import nats.errors
import pytest
from pydantic import BaseModel

from saas.common.bus import Bus, BusClient, RequestContext, Responder
from saas.common.bus.connection import split_credentials
from saas.common.errors import ServiceError
from saas.common.events.consumer import EventConsumer
from saas.common.lifecycle import TaskTracker
from tests.support.events import connect, project_event


class Ping(BaseModel):
    pass


async def as_user(nats_server, user: str, errors: list[str] | None = None) -> Bus:
    bus = Bus(nats_server.urls()[user], f"as-{user}")
    await bus.connect()
    if errors is not None:

        async def collect(exc: Exception) -> None:
            errors.append(str(exc))

        bus.nc._error_cb = collect
    return bus


async def test_a_client_without_credentials_is_refused(nats_server):
    plain, _, _ = split_credentials(nats_server.url)
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
        await nats.connect(plain, allow_reconnect=False, connect_timeout=2)


async def test_a_wrong_password_is_refused(nats_server):
    server, user, _ = split_credentials(nats_server.urls()["identity"])
    with pytest.raises((nats.errors.NoServersError, nats.errors.Error, OSError)):
        await nats.connect(
            server, user=user, password="guessed", allow_reconnect=False, connect_timeout=2
        )


async def test_a_service_publishes_its_own_events_and_nobody_elses(nats_server):
    ops = await connect(nats_server.url)  # configures the streams, as `saas migrate` does
    tenancy = await as_user(nats_server, "tenancy")
    identity = await as_user(nats_server, "identity")
    event = project_event("acme", 1)  # project.created belongs to tenancy
    await tenancy.js.publish(event.type, event.to_bytes(), headers={"Nats-Msg-Id": event.id})
    forged = project_event("acme", 2)
    with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
        await identity.js.publish(forged.type, forged.to_bytes(), timeout=1)
    info = await ops.js.stream_info("EVENTS")
    assert info.state.messages == 1  # only tenancy's
    for bus in (ops, tenancy, identity):
        await bus.close()


async def test_a_service_cannot_answer_another_services_requests(nats_server):
    errors: list[str] = []
    identity = await as_user(nats_server, "identity", errors)
    impostor = Responder("tenancy")

    @impostor.operation("ping", Ping)
    async def ping(_: Ping, __: RequestContext) -> Ping:
        return Ping()

    tasks = TaskTracker()
    await impostor.start(identity, tasks)  # the server refuses the subscription
    await identity.nc.flush()
    await asyncio.sleep(0.2)
    ops = await as_user(nats_server, "ops")
    with pytest.raises(ServiceError) as caught:
        await BusClient(ops, timeout=1).request("tenancy", "ping", Ping(), Ping)
    assert caught.value.code.value == "service_unavailable"
    for bus in (identity, ops):
        await bus.close()


async def test_the_gateway_may_not_call_internal_operations(nats_server):
    errors: list[str] = []
    gateway = await as_user(nats_server, "gateway", errors)
    identity = await as_user(nats_server, "identity")
    answered: list[str] = []
    responder = Responder("identity")

    @responder.operation("internal.role", Ping)
    async def role(_: Ping, __: RequestContext) -> Ping:
        answered.append("role")
        return Ping()

    @responder.operation("ping", Ping)
    async def ping(_: Ping, __: RequestContext) -> Ping:
        return Ping()

    await responder.start(identity, TaskTracker())
    client = BusClient(gateway, timeout=1)
    await client.request("identity", "ping", Ping(), Ping)  # what clients may ask: fine
    with pytest.raises(ServiceError):
        await client.request("identity", "internal.role", Ping(), Ping)
    assert answered == []
    for bus in (gateway, identity):
        await bus.close()


async def test_no_one_but_audit_may_read_audits_consumer(nats_server, db):
    ops = await connect(nats_server.url)
    dev = await as_user(nats_server, "dev")
    with pytest.raises(Exception):  # noqa: B017 - a permission error or a timeout, never events
        await dev.js.consumer_info("EVENTS", "audit", timeout=1)
    own = EventConsumer(bus=dev, db=db, schema="audit", durable="team-billing", handler=None)
    await own.subscribe()  # a reader's own durable is fine
    for bus in (ops, dev):
        await bus.close()
