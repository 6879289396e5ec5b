"""Wires the identity process: its settings, resources, bus handlers and components, in one place."""

from __future__ import annotations

from saas.common.components import Component
from saas.common.events.consumer import EventConsumer
from saas.common.events.relay import OutboxRelay
from saas.common.process import ServerOptions, ServiceProcess
from saas.identity import __version__, handlers, mail
from saas.identity.cli import IDENTITY
from saas.identity.deps import Deps
from saas.identity.housekeeping import Housekeeping
from saas.identity.passwords import common_passwords
from saas.identity.settings import IdentitySettings
from saas.identity.store.tables import SCHEMA

__all__ = ["SCHEMA", "IdentitySettings", "build", "wire"]

MAIL_CONSUMER = "identity-mail"
TENANTS_CONSUMER = "identity-tenants"


class Preparation(Component):
    """Before the first request: a signing key exists (the first start creates it, once, however
    many replicas start together), and the slow first-use work is done (the common-password
    list, the dummy hash that unknown addresses are checked against)."""

    name = "identity-preparation"

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def start(self) -> None:
        await self.deps.keys.ensure_active()
        common_passwords()
        await self.deps.passwords.verify_nobody("")

    async def stop(self) -> None:
        self.deps.passwords.close()


def build(settings: IdentitySettings | None = None) -> ServiceProcess:
    return wire(settings or IdentitySettings.load())[0]


def wire(settings: IdentitySettings) -> tuple[ServiceProcess, Deps]:
    """The process and what its use cases share (tests and the benchmark reach the key ring)."""
    process = ServiceProcess(IDENTITY, __version__, settings)
    # uvloop: each login is some twenty round trips to PostgreSQL and NATS, each cheaper on it.
    process.server = ServerOptions(loop="uvloop")
    deps = Deps.build(process.db, settings)
    # Identity verifies its own tokens from its own keys, never over the bus.
    process.use_jwks_source(deps.keys.jwks)
    handlers.register(process.responder, deps)
    process.add(Preparation(deps))
    process.add(OutboxRelay.for_process(process, SCHEMA))
    process.add(
        EventConsumer.for_process(
            process,
            schema=SCHEMA,
            durable=MAIL_CONSUMER,
            subjects=mail.MAIL_EVENTS,
            handler=mail.make_mail_handler(
                deps, mail.sender_from_settings(settings), process.metrics
            ),
        )
    )
    process.add(
        EventConsumer.for_process(
            process,
            schema=SCHEMA,
            durable=TENANTS_CONSUMER,
            subjects=["tenant.deleted"],
            handler=handlers.on_tenant_events,
        )
    )
    process.add(Housekeeping(process.db))
    return process, deps
