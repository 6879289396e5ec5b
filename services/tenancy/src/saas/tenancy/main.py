"""Wires the tenancy process: its settings, resources, bus handlers and components, in one place."""

from __future__ import annotations

from saas.common.events.relay import OutboxRelay
from saas.common.process import ServerOptions, ServiceProcess
from saas.tenancy import __version__, handlers
from saas.tenancy.cli import TENANCY
from saas.tenancy.deps import Deps
from saas.tenancy.reconciler import Reconciler
from saas.tenancy.settings import ServiceSettings
from saas.tenancy.store.tables import SCHEMA

__all__ = ["SCHEMA", "ServiceSettings", "build", "wire"]


def build(settings: ServiceSettings | None = None) -> ServiceProcess:
    return wire(settings or ServiceSettings.load())[0]


def wire(settings: ServiceSettings) -> tuple[ServiceProcess, Deps]:
    """The process and what its use cases share (tests reach the caches)."""
    process = ServiceProcess(TENANCY, __version__, settings)
    process.server = ServerOptions(loop="uvloop")  # see pyproject.toml
    deps = Deps.build(process.db, process.client, process.temporal, settings)
    handlers.register(process.responder, deps)
    process.add(OutboxRelay.for_process(process, SCHEMA))
    process.add(deps.starts)
    process.add(
        Reconciler(
            deps,
            interval=settings.tenancy_reconcile_interval,
            after=settings.tenancy_reconcile_after,
        )
    )
    return process, deps
