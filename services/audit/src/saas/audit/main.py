"""Wires the audit process: its settings, resources, bus handlers and event consumer, in one place."""

from __future__ import annotations

from saas.audit import __version__, handlers
from saas.common.bus import Responder
from saas.common.events.wiring import attach_consumer
from saas.common.process import DATABASE, NATS, ServiceProcess
from saas.common.settings import Settings

SERVICE = "audit"
CONSUMER = "audit"


class AuditSettings(Settings):
    service_name: str = SERVICE
    ops_port: int = 8003
    # The audit service may only read and append: see migrations/audit/versions/0002.
    database_role: str | None = "audit_writer"
    consumer_batch_size: int = 500


def build(settings: AuditSettings | None = None) -> ServiceProcess:
    settings = settings or AuditSettings.load()
    responder = Responder(SERVICE)
    process = ServiceProcess(
        SERVICE, __version__, settings, needs=(DATABASE, NATS), responder=responder
    )

    @process.on_startup
    async def register_handlers(p: ServiceProcess) -> None:
        assert p.db is not None
        handlers.register(responder, p.db)

    attach_consumer(
        process,
        schema="audit",
        durable=CONSUMER,
        handler=handlers.make_event_handler(process.metrics),
    )
    return process
