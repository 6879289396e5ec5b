"""The JetStream streams, declared by code at start-up, idempotently.

`EVENTS` holds every domain event (subject = event type). `DEADLETTER` holds what a consumer
gave up on, with the reason in headers, so operators can inspect and replay it.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from saas.common.events.catalogue import subject_prefixes
from saas.common.logging import get_logger
from saas.common.settings import EventSettings

log = get_logger(__name__)

EVENTS_STREAM = "EVENTS"
DEADLETTER_STREAM = "DEADLETTER"
DEADLETTER_PREFIX = "deadletter"


def events_config(settings: EventSettings) -> StreamConfig:
    return StreamConfig(
        name=EVENTS_STREAM,
        description="Domain events; the subject is the event type",
        subjects=subject_prefixes(),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
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
        duplicate_window=settings.events_duplicate_window,
        max_age=settings.events_max_age,
        num_replicas=settings.events_replicas,
    )


async def ensure_streams(js: JetStreamContext, settings: EventSettings) -> None:
    for config in (events_config(settings), deadletter_config(settings)):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream created", stream=config.name)
        else:
            await js.update_stream(config)
