"""The streams have one owner (`saas events streams apply`), and every process checks them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import nats.js.errors
import pytest

from saas.common.bus import Bus
from saas.common.events.catalogue import subject_prefixes
from saas.common.events.stream import (
    DEADLETTER_STREAM,
    EVENTS_STREAM,
    StreamCheck,
    StreamsMissing,
    apply_streams,
)
from saas.common.metrics import Metrics
from saas.common.process import ServiceProcess
from saas.common.settings import BusSettings, DatabaseSettings, EventSettings
from tests.support.events import connect


class AuditLikeSettings(DatabaseSettings, BusSettings, EventSettings):
    pass


async def test_streams_follow_the_settings_and_can_be_declared_again(nats_server):
    bus = await connect(nats_server.url)  # declares them once with the defaults
    settings = EventSettings.load(
        events_duplicate_window=30, events_max_age=3600, events_max_bytes=64 * 1024**2
    )
    await apply_streams(bus.js, settings)
    await apply_streams(bus.js, settings)  # and again: nothing changes, nothing fails
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


async def test_events_refuses_new_events_at_its_limit_rather_than_dropping_unread_ones(nats_server):
    bus = await connect(nats_server.url)
    info = await bus.js.stream_info(EVENTS_STREAM)
    assert info.config.discard == "new"


async def test_a_process_waits_while_the_streams_are_missing_and_reports_drift(nats_server):
    bus = Bus(nats_server.url, "check")
    await bus.connect()
    settings = EventSettings.load()
    check = StreamCheck(bus, settings, Metrics())
    with pytest.raises(StreamsMissing, match="saas migrate"):
        await check.start()
    await apply_streams(bus.js, EventSettings.load(events_max_age=3600))  # another release's idea
    assert (await check.check())[EVENTS_STREAM] == [
        f"max_age: expected {settings.events_max_age!r}, found 3600.0"
    ]
    assert check.drifted.labels(EVENTS_STREAM)._value.get() == 1
    await apply_streams(bus.js, settings)
    assert await check.check() == {}
    await bus.close()


async def test_processes_no_longer_rewrite_the_streams(stack, nats_server):
    """An old replica starting up must not shrink limits or drop subjects: only the release step does."""
    bus = await connect(nats_server.url)
    narrower = EventSettings.load(events_max_bytes=8 * 1024**2)
    process = ServiceProcess(
        "old-replica",
        "0.9",
        AuditLikeSettings.load(
            nats_url=nats_server.url, events_max_bytes=narrower.events_max_bytes
        ),
    )
    await process.start()
    info = await bus.js.stream_info(EVENTS_STREAM)
    assert info.config.max_bytes == EventSettings.load().events_max_bytes
    await process.stop()
    await bus.close()


def test_saas_events_streams_check_exits_1_on_drift(nats_server):
    env = {**os.environ, "NATS_URL": nats_server.url}
    run = [sys.executable, "-m", "saas.common.cli", "events", "streams"]
    missing = subprocess.run([*run, "check"], env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "saas migrate" in missing.stderr + missing.stdout
    applied = subprocess.run([*run, "apply"], env=env, capture_output=True, text=True, check=True)
    assert "created EVENTS" in applied.stdout
    ok = subprocess.run([*run, "check"], env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr


async def test_an_error_ack_reaches_the_publishers_future(nats_server):
    bus = await connect(nats_server.url)
    await apply_streams(bus.js, EventSettings.load(events_max_msg_bytes=1024))
    ack = await bus.js.publish_async("project.created", b"x" * 2048, stream=EVENTS_STREAM)
    with pytest.raises(nats.js.errors.APIError) as refused:
        await asyncio.wait_for(ack, timeout=5)  # not left pending until the caller gives up
    assert refused.value.err_code == 10054  # message size exceeds maximum allowed
    await bus.close()
