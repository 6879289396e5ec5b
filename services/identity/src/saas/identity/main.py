"""Wires the identity process: its settings, resources and bus handlers, in one place."""

from __future__ import annotations

from saas.common.bus import Responder
from saas.common.events.wiring import attach_outbox_relay
from saas.common.process import DATABASE, NATS, ServiceProcess
from saas.common.settings import Settings
from saas.identity import __version__

SERVICE = "identity"


class IdentitySettings(Settings):
    service_name: str = SERVICE
    ops_port: int = 8001


def build(settings: IdentitySettings | None = None) -> ServiceProcess:
    settings = settings or IdentitySettings.load()
    responder = Responder(SERVICE)
    process = ServiceProcess(
        SERVICE, __version__, settings, needs=(DATABASE, NATS), responder=responder
    )
    attach_outbox_relay(process, "identity")
    return process
