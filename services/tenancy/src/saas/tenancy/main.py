"""Wires the tenancy process: its settings, resources and bus handlers, in one place."""

from __future__ import annotations

from saas.common.bus import Responder
from saas.common.events.wiring import attach_outbox_relay
from saas.common.process import DATABASE, NATS, TEMPORAL, ServiceProcess
from saas.common.settings import Settings
from saas.tenancy import __version__

SERVICE = "tenancy"
TASK_QUEUE = "tenancy"


class TenancySettings(Settings):
    service_name: str = SERVICE
    ops_port: int = 8002
    temporal_task_queue: str = TASK_QUEUE


def build(settings: TenancySettings | None = None) -> ServiceProcess:
    settings = settings or TenancySettings.load()
    responder = Responder(SERVICE)
    process = ServiceProcess(
        SERVICE, __version__, settings, needs=(DATABASE, NATS, TEMPORAL), responder=responder
    )
    attach_outbox_relay(process, "public")
    return process
