"""The `saas` command. Its own subcommands are generic (`dev`, `db`); each installed service adds
its subcommands through the `saas.commands` entry-point group, so this library never imports a
service and another team's package can plug in its own.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click
from pydantic import ValidationError

from saas.common import __version__
from saas.common.settings import InsecureConfigurationError

COMMANDS_GROUP = "saas.commands"


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


def _register_builtins() -> None:
    from saas.common.commands import db, dev, events

    cli.add_command(dev.dev)
    cli.add_command(db.db)
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
