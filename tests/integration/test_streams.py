"""The streams are declared by code, idempotently, with the limits the settings give."""

from __future__ import annotations

import asyncio

import nats.js.errors
import pytest

from saas.common.events.catalogue import subject_prefixes
from saas.common.events.stream import DEADLETTER_STREAM, EVENTS_STREAM, ensure_streams
from saas.common.settings import EventSettings
from tests.support.events import connect


async def test_streams_follow_the_settings_and_can_be_declared_again(nats_server):
    bus = await connect(nats_server.url)  # declares them once with the defaults
    settings = EventSettings.load(
        events_duplicate_window=30, events_max_age=3600, events_max_bytes=64 * 1024**2
    )
    await ensure_streams(bus.js, settings)
    await ensure_streams(bus.js, settings)  # and again: nothing changes, nothing fails
    info = await bus.js.stream_info(EVENTS_STREAM)
    assert info.config.duplicate_window == 30
    assert info.config.max_age == 3600
    assert info.config.max_bytes == 64 * 1024**2
    assert info.config.storage == "file"
    assert sorted(info.config.subjects) == subject_prefixes()
    assert (await bus.js.stream_info(DEADLETTER_STREAM)).config.subjects == ["deadletter.>"]
    await bus.close()


async def test_a_subject_outside_the_catalogue_is_refused_by_the_server(nats_server):
    bus = await connect(nats_server.url)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await bus.js.publish("payment.captured", b"{}", timeout=1)
    await bus.close()


async def test_an_error_ack_reaches_the_publishers_future(nats_server):
    bus = await connect(nats_server.url)
    await ensure_streams(bus.js, EventSettings.load(events_max_msg_bytes=1024))
    ack = await bus.js.publish_async("project.created", b"x" * 2048, stream=EVENTS_STREAM)
    with pytest.raises(nats.js.errors.APIError) as refused:
        await asyncio.wait_for(ack, timeout=5)  # not left pending until the caller gives up
    assert refused.value.err_code == 10054  # message size exceeds maximum allowed
    await bus.close()
