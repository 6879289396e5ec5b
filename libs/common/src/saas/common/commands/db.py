"""`saas db`: set up the database logins, and apply every owner's migrations."""

from __future__ import annotations

import asyncio
import os

import click

from saas.common.migrations import find_alembic_ini, upgrade_owners


@click.group()
def db() -> None:
    """Database logins and migrations of the owning services."""


@db.command("bootstrap-roles")
@click.option(
    "--admin-url",
    envvar="DATABASE_ADMIN_URL",
    required=True,
    help="a superuser, or a CREATEROLE login that owns the database [env: DATABASE_ADMIN_URL]",
)
def bootstrap_roles(admin_url: str) -> None:
    """Create or update the migration login and one login per service (idempotent).

    Passwords come from the environment: MIGRATE_DATABASE_PASSWORD, IDENTITY_DATABASE_PASSWORD,
    TENANCY_DATABASE_PASSWORD, AUDIT_DATABASE_PASSWORD; a login whose variable is unset keeps its
    password. Run it before `saas db upgrade`, which then runs as the migration login."""
    from saas.common.db_roles import LOGINS, UnsafeRoleError
    from saas.common.db_roles import bootstrap_roles as bootstrap

    passwords = {login.name: os.environ.get(login.password_env) for login in LOGINS}
    try:
        asyncio.run(bootstrap(admin_url, passwords))
    except UnsafeRoleError as exc:
        raise click.ClickException(str(exc)) from None
    for login in LOGINS:
        state = "password set" if passwords[login.name] else "password unchanged"
        click.echo(f"{login.name}: ready ({state})")


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply identity, tenancy and audit migrations (every owner in alembic.ini) as the login in
    DATABASE_URL, which should be the migration login (it owns what it creates)."""
    ini = find_alembic_ini()
    for section in upgrade_owners(ini, revision):
        click.echo(f"migrated {section} to {revision}")
