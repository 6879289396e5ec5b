"""Wires the identity process: its settings, resources, bus handlers and components, in one place."""

from __future__ import annotations

from saas.common.events.relay import OutboxRelay
from saas.common.process import ServiceProcess
from saas.common.settings import (
    BusSettings,
    DatabaseSettings,
    EventSettings,
    SigningKeySettings,
    TokenSettings,
)
from saas.identity import __version__
from saas.identity.cli import IDENTITY

SCHEMA = "identity"


class IdentitySettings(
    DatabaseSettings, BusSettings, EventSettings, TokenSettings, SigningKeySettings
):
    """Identity reads the database, the bus, events and the secret protecting its signing keys."""


def build(settings: IdentitySettings | None = None) -> ServiceProcess:
    process = ServiceProcess(IDENTITY, __version__, settings or IdentitySettings.load())
    process.add(OutboxRelay.for_process(process, SCHEMA))
    return process
