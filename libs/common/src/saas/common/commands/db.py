"""`saas db upgrade`: apply every owner's migrations."""

from __future__ import annotations

import click

from saas.common.migrations import find_alembic_ini, upgrade_owners


@click.group()
def db() -> None:
    """Database migrations of the owning services."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply identity, tenancy and audit migrations (every owner in alembic.ini)."""
    ini = find_alembic_ini()
    for section in upgrade_owners(ini, revision):
        click.echo(f"migrated {section} to {revision}")
