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

from saas.common import __version__
from saas.common.bus.access import BusAccess

if TYPE_CHECKING:
    from saas.common.process import ServiceProcess

COMMANDS_GROUP = "saas.commands"
PROCESSES_GROUP = "saas.processes"

# The built-in groups: where each is, and what `saas --help` says of it (its help's first
# paragraph, which a unit test keeps equal to the command's own). A group's module is imported
# only when that group is invoked, so `saas tenants ...` never loads Alembic for `saas db`.
BUILTINS: dict[str, tuple[str, str]] = {
    "bus": ("saas.common.commands.bus:bus", "The message bus's users and permissions."),
    "db": (
        "saas.common.commands.db:db",
        "Database logins and migrations of the owning services.",
    ),
    "events": ("saas.common.commands.events:events", "The domain event contract."),
    "migrate": (
        "saas.common.commands.migrate:migrate",
        "Apply database migrations, stream configuration and every package's release steps.",
    ),
}


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


def _load(target: str) -> click.Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class SaasGroup(click.Group):
    """Every command is imported when it is invoked: a built-in from BUILTINS, another package's
    from its `saas.commands` entry point. Listing them (`saas --help`) describes a built-in not
    imported yet by its BUILTINS line, and imports the other packages' (light) command modules."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = (
            set(super().list_commands(ctx))
            | set(BUILTINS)
            | {ep.name for ep in entry_points(group=COMMANDS_GROUP)}
        )
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        if name in BUILTINS:
            command = _load(BUILTINS[name][0])
            self.add_command(command, name)
            return command
        for ep in entry_points(group=COMMANDS_GROUP, name=name):
            return ep.load()
        return None

    def described(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command, or for a built-in not imported yet, a stand-in with its short help."""
        if name in BUILTINS and name not in self.commands:
            return click.Command(name, help=BUILTINS[name][1])
        return self.get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with `described` in place of `get_command`."""
        commands = []
        for name in self.list_commands(ctx):
            command = self.described(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, c.get_short_help_str(limit)) for name, c in commands])


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
    """Import every built-in group now: the whole tree at once, for whoever walks it. `saas`
    itself imports only the one it runs."""
    ctx = click.Context(cli)
    for name in BUILTINS:
        cli.get_command(ctx, name)


def _configuration_error(exc: Exception) -> str | None:
    """What to say of a settings error (then exit 2), or None for any other exception. The
    settings' modules are imported here, not at start-up: a command that loads no settings
    cannot have raised their errors."""
    from pydantic import ValidationError

    from saas.common.settings import InsecureConfigurationError

    if isinstance(exc, InsecureConfigurationError):
        return f"error: {exc}"
    if isinstance(exc, ValidationError):
        return f"error: invalid configuration:\n{exc}"
    return None


def main() -> None:
    try:
        cli(standalone_mode=True)
    except Exception as exc:
        message = _configuration_error(exc)
        if message is None:
            raise
        click.echo(message, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
