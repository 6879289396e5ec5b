"""The JetStream streams: configured in one operational step, checked by every process.

`EVENTS` holds every domain event (subject = event type). `DEADLETTER` holds what a consumer
gave up on, with the reason in headers, so operators can inspect and replay it.

One owner: `saas events streams apply` (part of `saas migrate`, run with the migrations before a
release rolls out) creates or updates the streams from `EventSettings`. Processes never rewrite
them: with every replica declaring its own idea of the config at start, the last one to start
would win, an older replica would remove newer subjects, and different limits would delete data.
Each process that publishes or consumes runs a `StreamCheck` instead: it waits (not ready) while
a stream is missing, and reports drift from what its settings say (log, metric, alert).

`EVENTS` discards nothing it has not been told to: at its byte or message limit it refuses new
events (`DiscardPolicy.NEW`), which then wait in the services' outboxes, rather than deleting old
events a consumer may not have read. Its age limit still applies; `saas_stream_*` gauges and the
alert rules warn long before a consumer's backlog reaches it.

`AUDIT_CHECKPOINTS` holds the heads of the audit log's hash chains (`audit.checkpoint.<encoded
tenant key>`, published by the audit process), outside the database, where no one may delete or
purge them: what lets verification notice a chain's tail, or a whole chain, deleted or rewritten.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from saas.common.bus import Bus
from saas.common.components import Component
from saas.common.events.catalogue import subject_prefixes
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings

log = get_logger(__name__)

EVENTS_STREAM = "EVENTS"
DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter"
# What a drift check compares: what decides which events are kept, and where.
CHECKED = (
    "subjects",
    "storage",
    "retention",
    "discard",
    "duplicate_window",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msg_size",
    "num_replicas",
    "deny_delete",
    "deny_purge",
)
AUDIT_CHECKPOINTS_STREAM = "AUDIT_CHECKPOINTS"
AUDIT_CHECKPOINT_PREFIX = "audit.checkpoint"


def events_config(settings: EventSettings) -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        description="Domain events; the subject is the event type",
        subjects=subject_prefixes(),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        duplicate_window=settings.events_duplicate_window,
        max_age=settings.events_max_age,
        max_bytes=settings.events_max_bytes,
        max_msg_size=settings.events_max_msg_bytes,
        num_replicas=settings.events_replicas,
    )


def deadletter_config(settings: EventSettings) -> StreamConfig:
    return StreamConfig(
        name=DEADLETTER_STREAM,
        description="Events a consumer gave up on; headers say which consumer and why",
        subjects=[f"{DEADLETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.NEW,
        duplicate_window=settings.events_duplicate_window,
        max_age=settings.events_max_age,
        num_replicas=settings.events_replicas,
    )


def audit_checkpoints_config(settings: EventSettings) -> StreamConfig:
    # No age or size limit, and no deleting, purging or rollups: a checkpoint outlives whatever
    # happens to the database it vouches for.
    return StreamConfig(
        name=AUDIT_CHECKPOINTS_STREAM,
        description="Heads of the audit log's hash chains (count and hash); never deleted",
        subjects=[f"{AUDIT_CHECKPOINT_PREFIX}.>"],
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        duplicate_window=settings.events_duplicate_window,
        num_replicas=settings.events_replicas,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
    )


def stream_configs(settings: EventSettings) -> list[StreamConfig]:
    return [
        events_config(settings),
        deadletter_config(settings),
        audit_checkpoints_config(settings),
    ]


async def apply_streams(js: JetStreamContext, settings: EventSettings) -> list[str]:
    """Create or update every stream to match `settings`; says what it did, one line per stream."""
    done: list[str] = []
    for config in stream_configs(settings):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            done.append(f"created {config.name}")
        else:
            await js.update_stream(config)
            done.append(f"updated {config.name}")
    return done


def _normal(field: str, value: Any) -> Any:
    if value is None:
        return {"max_bytes": -1, "max_msgs": -1, "max_msg_size": -1, "max_age": 0}.get(field)
    if field == "subjects":
        return sorted(value)
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def drift(expected: StreamConfig, actual: StreamConfig) -> list[str]:
    """The settings in which a stream differs from what these settings expect (pure)."""
    found = []
    for field in CHECKED:
        want, have = (
            _normal(field, getattr(expected, field)),
            _normal(field, getattr(actual, field)),
        )
        if want not in (None, False) and want != have:
            found.append(f"{field}: expected {want!r}, found {have!r}")
    return found


class StreamsMissing(RuntimeError):
    pass


class StreamCheck(Component):
    """Waits until the streams exist, then reports drift and usage every `interval` seconds."""

    name = "stream-check"

    def __init__(
        self, bus: Bus, settings: EventSettings, metrics: Metrics, interval: float = 60.0
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self.drifted = metrics.gauge(
            "stream_config_drift",
            "Settings in which a stream differs from this process's",
            ("stream",),
        )
        self.bytes = metrics.gauge("stream_bytes", "Bytes a stream holds", ("stream",))
        self.max_bytes = metrics.gauge("stream_max_bytes", "A stream's byte limit", ("stream",))
        self.messages = metrics.gauge("stream_messages", "Messages a stream holds", ("stream",))

    async def start(self) -> None:
        await self.check(missing_is_fatal=True)
        self._task = asyncio.create_task(self._every_interval(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def check(self, *, missing_is_fatal: bool = False) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for expected in stream_configs(self.settings):
            try:
                info = await self.bus.js.stream_info(expected.name)
            except NotFoundError:
                if missing_is_fatal:
                    raise StreamsMissing(
                        f"stream {expected.name} does not exist: run `saas migrate` "
                        "(or `saas events streams apply`)"
                    ) from None
                found[expected.name] = [
                    "missing: run `saas migrate` (or `saas events streams apply`)"
                ]
                log.error("stream missing", stream=expected.name)
                continue
            differences = drift(expected, info.config)
            self.drifted.labels(expected.name).set(len(differences))
            self.bytes.labels(expected.name).set(info.state.bytes)
            self.max_bytes.labels(expected.name).set(info.config.max_bytes or -1)
            self.messages.labels(expected.name).set(info.state.messages)
            if differences:
                found[expected.name] = differences
                log.warning("stream configuration drift", stream=expected.name, drift=differences)
        return found

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # NATS away: the next round tries again
                log.warning("stream check failed", error=repr(exc))
