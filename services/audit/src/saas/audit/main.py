"""Wires the audit process: its settings, resources and bus handlers, in one place."""

from __future__ import annotations

from saas.audit import __version__
from saas.common.bus import Responder
from saas.common.process import DATABASE, NATS, ServiceProcess
from saas.common.settings import Settings

SERVICE = "audit"


class AuditSettings(Settings):
    service_name: str = SERVICE
    ops_port: int = 8003


def build(settings: AuditSettings | None = None) -> ServiceProcess:
    settings = settings or AuditSettings.load()
    responder = Responder(SERVICE)
    return ServiceProcess(
        SERVICE, __version__, settings, needs=(DATABASE, NATS), responder=responder
    )
