"""`saas identity` runs the identity service (`rotate-keys` rotates its signing key);
`saas users` holds operators' commands on accounts (`make-admin`, `revoke-admin`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

IDENTITY = ProcessSpec(
    "identity",
    "saas.identity.main:build",
    8001,
    "IDENTITY_OPS_URL",
    "IDENTITY_OPS_PORT",
    order=10,
    database_login=db_roles.IDENTITY.name,
    bus=BusAccess("identity", events_of="identity", consumes=("identity-mail", "identity-tenants")),
)
PROCESSES = [IDENTITY]

command = service_group(
    IDENTITY, "Run the identity service (NATS responders plus /health, /health/ready, /metrics)."
)

T = TypeVar("T")


def _with_deps(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(deps)` against the database in DATABASE_URL, with identity's settings."""

    async def run() -> T:
        from saas.common.db import Database
        from saas.identity.deps import Deps
        from saas.identity.settings import IdentitySettings

        settings = IdentitySettings.load(db_pool_size=1, db_max_overflow=0)
        db = Database.from_settings(settings, application_name="saas-identity-cli")
        deps = Deps.build(db, settings)
        try:
            return await work(deps)
        finally:
            deps.passwords.close()
            await db.dispose()

    return asyncio.run(run())


@command.command("rotate-keys")
def rotate_keys() -> None:
    """Make a new signing key active. The previous key stays in the JWKS until every token it
    signed has expired (ACCESS_TOKEN_TTL + JWT_LEEWAY after now), then leaves it."""

    async def rotate(deps) -> tuple[str, str | None]:
        from saas.common.events.catalogue import SigningKeyRotated
        from saas.identity.events import Origin, publish

        async with deps.db.session() as session:
            kid, previous = await deps.keys.rotate(session)
            await publish(
                session,
                Origin.system("operator"),
                SigningKeyRotated(kid=kid, previous_kid=previous),
            )
        return kid, previous

    kid, previous = _with_deps(rotate)
    click.echo(f"active signing key: {kid}")
    if previous:
        click.echo(f"retired: {previous} (published for verification until its tokens expire)")


@click.group()
def users() -> None:
    """Operators' commands on user accounts."""


def _set_admin(email: str, grant: bool) -> None:
    async def change(deps) -> bool:
        import sqlalchemy as sa

        from saas.common.events.catalogue import (
            UserPlatformAdminGranted,
            UserPlatformAdminRevoked,
        )
        from saas.identity.accounts import normalise_email
        from saas.identity.events import Origin, publish
        from saas.identity.store.tables import users as users_table

        async with deps.db.session() as session:
            row = (
                await session.execute(
                    sa.select(users_table.c.id, users_table.c.platform_admin).where(
                        users_table.c.email == normalise_email(email)
                    )
                )
            ).one_or_none()
            if row is None:
                return False
            if row.platform_admin != grant:
                await session.execute(
                    sa.update(users_table)
                    .where(users_table.c.id == row.id)
                    .values(platform_admin=grant, updated_at=sa.func.now())
                )
                payload = (UserPlatformAdminGranted if grant else UserPlatformAdminRevoked)(
                    user_id=str(row.id)
                )
                await publish(session, Origin.system("operator"), payload, subject=str(row.id))
        return True

    if not _with_deps(change):
        raise click.ClickException(f"no account has the address {email}")
    state = "is a platform administrator" if grant else "is no longer a platform administrator"
    click.echo(f"{email} {state} (from their next login or token refresh)")


@users.command("make-admin")
@click.argument("email")
def make_admin(email: str) -> None:
    """Make the account with this address a platform administrator."""
    _set_admin(email, True)


@users.command("revoke-admin")
@click.argument("email")
def revoke_admin(email: str) -> None:
    """Take the platform administrator flag away from the account with this address."""
    _set_admin(email, False)
