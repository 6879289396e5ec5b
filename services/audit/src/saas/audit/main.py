"""Wires the audit process: its settings, resources, bus handlers and consumer, in one place."""

from __future__ import annotations

from pydantic import Field

from saas.audit import __version__, handlers
from saas.audit.checkpoints import CheckpointPublisher
from saas.audit.cli import AUDIT
from saas.audit.store import SCHEMA
from saas.common.events.consumer import EventConsumer
from saas.common.memberships import Memberships
from saas.common.process import ServiceProcess
from saas.common.settings import BusSettings, DatabaseSettings, EventSettings, TokenSettings

CONSUMER = "audit"


class AuditSettings(DatabaseSettings, BusSettings, EventSettings, TokenSettings):
    """Audit reads the database, the bus, events, and what a valid access token is."""

    # The audit service may only read and append: see migrations/audit/versions/0002.
    database_role: str | None = "audit_writer"
    consumer_batch_size: int = 500
    # At most this many seconds pass between appending to a chain and checkpointing its head.
    audit_checkpoint_interval: float = Field(default=5.0, gt=0)


def build(settings: AuditSettings | None = None) -> ServiceProcess:
    process = ServiceProcess(AUDIT, __version__, settings or AuditSettings.load())
    memberships = Memberships(process.client, ttl=process.settings.membership_cache_seconds)
    handlers.register(process.responder, process.db, process.bus, memberships)
    checkpoints = process.add(CheckpointPublisher.for_process(process))
    process.add(
        EventConsumer.for_process(
            process,
            schema=SCHEMA,
            durable=CONSUMER,
            handler=handlers.make_event_handler(process.metrics, checkpoints.mark),
            handler_records_ids=True,  # the log holds each event once: no second record
        )
    )
    return process
