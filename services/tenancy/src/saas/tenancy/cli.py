"""`saas tenancy` runs the tenancy service; `saas tenancy worker` runs its Temporal worker;
`saas tenants` holds operators' commands on tenants (`migrate-all`, `backup`, `restore`,
`suspend`, `resume`).

The tenant commands connect as the tenancy login (`DATABASE_URL=$TENANCY_DATABASE_URL`): it owns
the tenant schemas, so it is the one that migrates, dumps and restores them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from saas.common import db_roles
from saas.common.bus.access import BusAccess
from saas.common.cli import ProcessSpec, service_group

# Tenancy verifies callers' tokens (the JWKS), asks identity for roles and for a caller's
# tenants; its worker only makes a tenant's creator its owner. The worker's events go out through
# the service's outbox relay, so only the service publishes.
TENANCY = ProcessSpec(
    "tenancy",
    "saas.tenancy.main:build",
    8002,
    "TENANCY_OPS_URL",
    "TENANCY_OPS_PORT",
    order=10,
    database_login=db_roles.TENANCY.name,
    bus=BusAccess(
        "tenancy",
        events_of="tenancy",
        calls=("svc.identity.jwks", "svc.identity.internal.>", "svc.identity.users.tenants"),
    ),
)
WORKER = ProcessSpec(
    "tenancy-worker",
    "saas.tenancy.worker:build",
    8004,
    "TENANCY_WORKER_OPS_URL",
    "TENANCY_WORKER_OPS_PORT",
    order=20,
    database_login=db_roles.TENANCY.name,  # it creates, migrates and drops tenant schemas
    bus=BusAccess("tenancy-worker", calls=("svc.identity.internal.add_owner",)),
)
PROCESSES = [TENANCY, WORKER]

command = service_group(TENANCY, "Run the tenancy service, or one of its subcommands.")


@command.command()
def worker() -> None:
    """Run the Temporal worker for tenant provisioning and deletion."""
    WORKER.run()


# -- saas tenants ------------------------------------------------------------------------------
@click.group()
def tenants() -> None:
    """Tenant schemas: migrate them all, back one up, restore one; suspend or resume a tenant
    (as the tenancy login: DATABASE_URL=$TENANCY_DATABASE_URL)."""


@tenants.command("migrate-all")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=lambda: min(8, os.cpu_count() or 1),
    show_default="the CPUs, at most 8",
    help="schemas migrated at once, each by a process of its own",
)
@click.option("--quiet", is_flag=True, help="no progress bar, only failures and the summary")
def migrate_all_(concurrency: int, quiet: bool) -> None:
    """Bring every tenant schema to the head of the tenant migrations.

    Goes on past failures and exits 1 naming them; safe to run again. Run it after `saas migrate`
    (which brings the template new tenants are cloned from to the head first)."""
    from saas.common.migrations import find_alembic_ini
    from saas.tenancy import migrate_all
    from saas.tenancy.settings import ToolSettings

    settings = ToolSettings.load()
    bar = None

    def planned(plan: migrate_all.Plan) -> None:
        nonlocal bar
        click.echo(
            f"head {plan.head}: {len(plan.at_head)} at head, {len(plan.behind)} to migrate"
            + (f", {len(plan.ahead)} ahead of this code" if plan.ahead else ""),
            err=True,
        )
        if plan.behind and not quiet:
            bar = click.progressbar(length=len(plan.behind), label="migrating", file=sys.stderr)
            bar.__enter__()

    def progress(outcome: migrate_all.Outcome) -> None:
        if bar is not None:
            bar.update(1)

    started = time.perf_counter()  # after the imports: the run itself
    try:
        plan, outcomes = migrate_all.run(
            settings.database_url,
            find_alembic_ini(),
            concurrency=concurrency,
            on_plan=planned,
            progress=progress,
        )
    except migrate_all.TemplateBehind as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    for outcome in outcomes:
        if outcome.failed:
            click.echo(f"failed   {outcome.schema} at {outcome.before}: {outcome.error}")
        elif outcome.skipped:
            click.echo(f"skipped  {outcome.schema}: {outcome.skipped}")
        elif not quiet:
            took = f"{outcome.seconds * 1000:.0f} ms"
            click.echo(f"migrated {outcome.schema} {outcome.before} -> {outcome.after} ({took})")
    for schema, version in plan.ahead:
        click.echo(f"ahead    {schema} at {version}: newer than these migrations, left alone")
    failed = migrate_all.failures(outcomes)
    migrated = len(outcomes) - len(failed) - sum(1 for o in outcomes if o.skipped)
    elapsed = time.perf_counter() - started
    click.echo(
        f"{migrated} migrated, {len(plan.at_head)} already at head, {len(failed)} failed "
        f"in {elapsed:.2f} s",
        err=True,
    )
    if failed:
        names = ", ".join(o.schema for o in failed)
        raise click.ClickException(f"{len(failed)} tenant(s) not migrated: {names}")


def _schema(slug: str) -> str:
    from saas.common.tenant_names import InvalidSlugError, schema_for

    try:
        return schema_for(slug)
    except InvalidSlugError as exc:
        raise click.BadParameter(str(exc), param_hint="SLUG") from None


@tenants.command()
@click.argument("slug")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="the file to write (default: BACKUP_DIR/tenant_<slug>-<time>.dump)",
)
def backup(slug: str, output: Path | None) -> None:
    """Back up one tenant's schema (pg_dump's custom format) and record where it is."""
    from saas.tenancy import tools

    schema = _schema(slug)
    label = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path, size = asyncio.run(tools.back_up(slug, schema, output, label))
    click.echo(f"backed up {schema} to {path} ({size} bytes)")


@tenants.command()
@click.argument("slug")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def restore(slug: str, file: Path, yes: bool) -> None:
    """Replace a tenant's schema with a backup of it, in one transaction; then bring it to the
    migrations' head if the backup is older."""
    from saas.tenancy import tools

    schema = _schema(slug)
    if not yes:
        click.confirm(
            f"Everything in {schema} will be replaced by the content of {file}. Go on?",
            abort=True,
        )
    version = tools.restore(slug, schema, file)
    click.echo(f"restored {schema} from {file}; it is at {version}")


@tenants.command()
@click.argument("slug")
def suspend(slug: str) -> None:
    """Suspend a ready tenant: its members are refused its data (403) until it is resumed, within
    TENANT_CACHE_SECONDS on every tenancy replica. Nothing is deleted."""
    _move(slug, "suspended")


@tenants.command()
@click.argument("slug")
def resume(slug: str) -> None:
    """Make a suspended tenant ready again."""
    _move(slug, "ready")


def _move(slug: str, to: str) -> None:
    from saas.common.contracts.tenancy import TenantStatus
    from saas.tenancy import tools

    _schema(slug)  # a slug that could name no tenant never reaches SQL
    before = asyncio.run(tools.set_status(slug, TenantStatus(to)))
    click.echo(f"{slug}: {before} -> {to}" if before != to else f"{slug} already is {to}")
