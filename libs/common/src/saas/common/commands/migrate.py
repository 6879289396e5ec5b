"""`saas migrate`: every step a release needs before its processes roll out, in order.

1. the owning services' database migrations (`saas db upgrade`);
2. the JetStream streams' configuration (`saas events streams apply`);
3. each installed package's own release steps, from the `saas.release_steps` entry-point group
   (a callable taking the migration login's URL, or None for DATABASE_URL; run in name order),
   so a service adds its own (tenancy keeps its tenant template schema at head) without this
   library naming it.

Each step is idempotent: running `saas migrate` again when nothing changed changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

import click

from saas.common.commands import streams
from saas.common.migrations import find_alembic_ini, upgrade_owners

RELEASE_STEPS_GROUP = "saas.release_steps"


def release(say: Callable[[str], object] = click.echo, *, database_url: str | None = None) -> None:
    """Run every release step; `saas migrate`, `saas dev` and the test session all use this.
    The migrations connect as `database_url` (default: DATABASE_URL), the migration login."""
    for section in upgrade_owners(find_alembic_ini(), database_url=database_url):
        say(f"migrated {section} to head")
    for line in streams.apply():
        say(f"streams: {line}")
    for ep in sorted(entry_points(group=RELEASE_STEPS_GROUP), key=lambda ep: ep.name):
        say(f"{ep.name}: running")
        ep.load()(database_url)


@click.command()
def migrate() -> None:
    """Apply database migrations, stream configuration and every package's release steps."""
    release()
    click.echo("release steps done")
