"""The `saas` command, and what a service declares about the processes it runs.

Built-in subcommands are generic (`bus`, `db`, `events`, `migrate`, `run`). Each installed package adds its own
through the `saas.commands` entry-point group (a service adds `saas <service>`, the development
package adds `saas dev`), and declares its processes through `saas.processes`, so this library
never imports a service and another team's package can plug in the same way.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

import click
from pydantic import ValidationError

from saas.common import __version__
from saas.common.bus.access import BusAccess
from saas.common.settings import InsecureConfigurationError

if TYPE_CHECKING:
    from saas.common.process import ServiceProcess

COMMANDS_GROUP = "saas.commands"
PROCESSES_GROUP = "saas.processes"


@dataclass(frozen=True)
class PublicPort:
    """A process's public port (the gateway's API), besides its ops port."""

    default_port: int
    url_key: str  # e.g. GATEWAY_URL in .devstack/env
    port_env: str  # the setting the process reads it from, e.g. GATEWAY_PORT


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a service: what builds it, its ops port, and the env key that advertises it.

    `saas run <name>` runs it; so does `saas dev`, with every other declared process."""

    name: str
    target: str  # "module:function" returning the wired ServiceProcess
    default_port: int  # of the ops endpoints (/health, /health/ready, /metrics)
    url_key: str  # e.g. IDENTITY_OPS_URL in .devstack/env
    port_env: str  # what a person sets to move it, e.g. GATEWAY_OPS_PORT, IDENTITY_OPS_PORT
    order: int = 50  # lower starts first, stops last
    database_login: str | None = None  # its own login (saas.common.db_roles); None: no database
    bus: BusAccess | None = None  # its NATS user and what it may do (saas.common.bus.access)
    public: PublicPort | None = None  # a public API on a port of its own (the gateway)

    def build(self) -> ServiceProcess:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)()

    def run(self) -> None:
        """Build the process and serve until SIGTERM."""
        self.build().run()


def service_group(spec: ProcessSpec, help: str) -> click.Group:
    """`saas <service>`: runs the service's process, or one of the subcommands added to it."""

    @click.group(name=spec.name, help=help, invoke_without_command=True)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        if ctx.invoked_subcommand is None:
            spec.run()

    return group


def discover_processes() -> list[ProcessSpec]:
    """Every process the installed packages declare, in start order."""
    specs: list[ProcessSpec] = []
    for ep in entry_points(group=PROCESSES_GROUP):
        specs.extend(ep.load())
    return sorted(specs, key=lambda s: (s.order, s.name))


class SaasGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | {
            ep.name for ep in entry_points(group=COMMANDS_GROUP)
        }
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        builtin = super().get_command(ctx, name)
        if builtin is not None:
            return builtin
        for ep in entry_points(group=COMMANDS_GROUP, name=name):
            return ep.load()
        return None


@click.group(cls=SaasGroup)
@click.version_option(__version__, prog_name="saas")
def cli() -> None:
    """Multi-tenant SaaS backend: run services, the local stack and operations tasks."""


@cli.command()
@click.argument("name", required=False, envvar="SAAS_PROCESS")
def run(name: str | None) -> None:
    """Run a declared process by name (default: $SAAS_PROCESS), e.g. `saas run tenancy-worker`."""
    specs = {spec.name: spec for spec in discover_processes()}
    if not name or name not in specs:
        known = ", ".join(sorted(specs)) or "none installed"
        raise click.UsageError(f"name a process to run ({known})")
    specs[name].run()


def _register_builtins() -> None:
    from saas.common.commands import bus, db, events, migrate, streams

    cli.add_command(bus.bus)
    cli.add_command(db.db)
    cli.add_command(migrate.migrate)
    events.events.add_command(streams.streams)
    cli.add_command(events.events)


def main() -> None:
    _register_builtins()
    try:
        cli(standalone_mode=True)
    except InsecureConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ValidationError as exc:
        click.echo(f"error: invalid configuration:\n{exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
