"""Wires the tenancy process: its settings, resources, bus handlers and components, in one place."""

from __future__ import annotations

from saas.common.events.relay import OutboxRelay
from saas.common.process import ServiceProcess
from saas.common.settings import BusSettings, DatabaseSettings, EventSettings, TemporalSettings
from saas.tenancy import __version__, handlers
from saas.tenancy.cli import TENANCY

SCHEMA = "public"


class TenancySettings(DatabaseSettings, BusSettings, EventSettings, TemporalSettings):
    """Tenancy (and its worker) read the database, the bus, events and Temporal."""


def build(settings: TenancySettings | None = None) -> ServiceProcess:
    process = ServiceProcess(TENANCY, __version__, settings or TenancySettings.load())
    handlers.register(process.responder, process.db)
    process.add(OutboxRelay.for_process(process, SCHEMA))
    return process
