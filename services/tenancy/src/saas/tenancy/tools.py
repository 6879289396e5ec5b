"""What `saas tenants backup`, `restore`, `suspend` and `resume` do, as the tenancy login."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import click
import sqlalchemy as sa

from saas.common.contracts.tenancy import TenantStatus
from saas.common.db import Database
from saas.common.errors import ServiceError
from saas.common.events import Actor
from saas.common.events.catalogue import TenantResumed, TenantSuspended
from saas.common.migrations import find_alembic_ini, tenant_revisions, upgrade_tenant
from saas.tenancy import backups, schema_rules, schemas
from saas.tenancy.events import publish
from saas.tenancy.settings import ToolSettings
from saas.tenancy.store import records
from saas.tenancy.store.tables import backups as backups_table

RESTORABLE = frozenset({TenantStatus.READY, TenantStatus.SUSPENDED})
OPERATOR = Actor.system("operator")  # `saas tenants suspend|resume`


def _server(settings: ToolSettings) -> backups.Server:
    return backups.Server(settings.database_url, settings.database_ssl_mode, settings.pg_bin_dir)


def _database(settings: ToolSettings) -> Database:
    return Database.from_settings(settings, application_name="saas-tenants", pool_size=1)


async def _tenant(db: Database, slug: str, schema: str, allowed: frozenset[TenantStatus]):
    async with db.session() as session:
        row = await records.by_slug(session, slug)
        exists = await schemas.schema_exists(session, schema)
    if row is None:
        raise click.ClickException(f"no tenant {slug!r}")
    if TenantStatus(row.status) not in allowed or not exists:
        raise click.ClickException(
            f"tenant {slug!r} is {row.status}" + ("" if exists else f" and has no schema {schema}")
        )
    return row


async def back_up(slug: str, schema: str, output: Path | None, label: str) -> tuple[Path, int]:
    settings = ToolSettings.load()
    db = _database(settings)
    try:
        allowed = frozenset({*RESTORABLE, TenantStatus.DELETING, TenantStatus.PROVISIONING})
        tenant = await _tenant(db, slug, schema, allowed)
        path = output or backups.backup_path(settings.backup_dir, schema, label)
        try:
            size = await backups.dump(_server(settings), schema, path)
        except backups.BackupError as exc:
            raise click.ClickException(str(exc)) from None
        async with db.session() as session:
            version = await schemas.schema_version(session, schema)
            await session.execute(
                sa.insert(backups_table).values(
                    tenant_id=uuid.UUID(str(tenant.id)),
                    location=str(path.resolve()),
                    bytes=size,
                    schema_version=version,
                    reason="operator",
                )
            )
        return path, size
    finally:
        await db.dispose()


def restore(slug: str, schema: str, file: Path) -> str | None:
    """Restore, then bring the schema to the head if the backup predates migrations; returns the
    version it ends at."""
    settings = ToolSettings.load()

    async def check() -> None:
        db = _database(settings)
        try:
            await _tenant(db, slug, schema, RESTORABLE)
        finally:
            await db.dispose()

    async def version() -> str | None:
        db = _database(settings)
        try:
            async with db.session() as session:
                return await schemas.schema_version(session, schema)
        finally:
            await db.dispose()

    asyncio.run(check())
    try:
        backups.restore(_server(settings), schema, file)
    except backups.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    ini = find_alembic_ini()
    current = asyncio.run(version())
    if schema_rules.is_behind(current, tenant_revisions(ini)):
        click.echo(f"the backup is at {current}; migrating {schema} to the head", err=True)
        upgrade_tenant(ini, schema, database_url=settings.database_url, only_existing=True)
        current = asyncio.run(version())
    return current


async def set_status(slug: str, to: TenantStatus) -> str:
    """`saas tenants suspend|resume`: the move the lifecycle allows, or its refusal; returns
    the status the tenant had."""
    settings = ToolSettings.load()
    db = _database(settings)
    try:
        async with db.session() as session:
            row = await records.by_slug(session, slug)
            if row is None or row.status == TenantStatus.DELETED.value:
                raise click.ClickException(f"no tenant {slug!r}")
            try:
                moved = await records.move(session, row.id, to)
            except ServiceError as exc:
                raise click.ClickException(exc.message) from None
            if moved is not None:  # in the same transaction: announced if and only if it moved
                announce = TenantSuspended if to is TenantStatus.SUSPENDED else TenantResumed
                await publish(
                    session,
                    announce(tenant_id=str(row.id), slug=slug),
                    tenant_id=str(row.id),
                    actor=OPERATOR,
                )
            return row.status
    finally:
        await db.dispose()
