"""The JetStream streams, declared by code at start-up, idempotently.

`EVENTS` holds every domain event (subject = event type). `DEADLETTER` holds what a consumer
gave up on, with the reason in headers, so operators can inspect and replay it.
`AUDIT_CHECKPOINTS` holds the heads of the audit log's hash chains (`audit.checkpoint.<encoded
tenant key>`, published by the audit process), outside the database, where no one may delete or
purge them: what lets verification notice a chain's tail, or a whole chain, deleted or rewritten.
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
AUDIT_CHECKPOINTS_STREAM = "AUDIT_CHECKPOINTS"
AUDIT_CHECKPOINT_PREFIX = "audit.checkpoint"


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


async def ensure_streams(js: JetStreamContext, settings: EventSettings) -> None:
    configs = (
        events_config(settings),
        deadletter_config(settings),
        audit_checkpoints_config(settings),
    )
    for config in configs:
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("stream created", stream=config.name)
        else:
            await js.update_stream(config)
