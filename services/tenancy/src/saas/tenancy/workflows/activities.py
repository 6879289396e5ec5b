"""The activities of tenancy's workflows: each an idempotent step that records itself in
`public.workflow_executions` (in its own transaction when it writes, so the record and the work
commit together).

Failures are handed to Temporal as `ApplicationError`s with a one-line, redacted message (the
tenant's failure reason is shown to its creator): non-retryable when retrying cannot help (the
creator's account is gone, the template cannot be cloned, an injected fault), retryable otherwise
(the database or identity unreachable), within each step's retry policy.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from saas.common.bus import BusClient
from saas.common.contracts.identity import AddOwner, Membership
from saas.common.contracts.tenancy import TenantStatus
from saas.common.db import Database
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events.catalogue import TenantCreated, TenantDeleted, TenantProvisioningFailed
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.migrations import tenant_revisions
from saas.common.redact import describe
from saas.common.tenant_names import InvalidSlugError, schema_for
from saas.tenancy import backups, schema_rules, schemas
from saas.tenancy.defaults import DEFAULT_SETTINGS
from saas.tenancy.events import WORKER, publish
from saas.tenancy.store import records
from saas.tenancy.store.tables import backups as backups_table
from saas.tenancy.store.tables import settings, tenants, workflow_executions
from saas.tenancy.workflows.faults import Faults
from saas.tenancy.workflows.inputs import FailedStep, TenantInput

log = get_logger(__name__)
T = TypeVar("T")

# Retrying cannot fix these.
PERMANENT: tuple[type[BaseException], ...] = (
    schemas.TemplateNotCloneable,
    schemas.NotATenantSchema,
    schemas.MigrationFailed,
    InvalidSlugError,
)
PERMANENT_CODES = frozenset(
    {ErrorCode.NOT_FOUND, ErrorCode.VALIDATION_ERROR, ErrorCode.FORBIDDEN, ErrorCode.CONFLICT}
)
# A tenant's schema may be dropped in these (a slug is never given out again, so a deleted
# tenant's schema is no one else's).
DROPPABLE = frozenset(
    {TenantStatus.PROVISIONING, TenantStatus.FAILED, TenantStatus.DELETING, TenantStatus.DELETED}
)
DURATION_BUCKETS = (0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class ProvisioningMetrics:
    duration: Any
    failures: Any

    @classmethod
    def declare(cls, metrics: Metrics) -> ProvisioningMetrics:
        return cls(
            duration=metrics.histogram(
                "tenant_provisioning_duration_seconds",
                "From the start of a provisioning (its creation, or a retry) to the tenant ready",
                buckets=DURATION_BUCKETS,
            ),
            failures=metrics.counter(
                "tenant_provisioning_failures",
                "Provisionings that ended with the tenant failed, by the step that failed",
                ("step",),
            ),
        )


def step(name: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
    """An activity named `name`: the test hook runs first, failures become `ApplicationError`s
    (retryable or not) and are noted on the workflow's record."""

    def decorate(run: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(run)
        async def activity_(self: TenantSteps, data: Any) -> T:
            tenant = data.tenant if isinstance(data, FailedStep) else data
            try:
                await self.faults.before(tenant.slug, name)
                return await run(self, data)
            except ApplicationError as exc:
                await self._note_failure(tenant, name, exc.message)
                raise
            except ServiceError as exc:
                permanent = exc.code in PERMANENT_CODES
                await self._note_failure(tenant, name, exc.message)
                raise ApplicationError(
                    exc.message, type=f"ServiceError.{exc.code.value}", non_retryable=permanent
                ) from None
            except Exception as exc:
                message = describe(exc)
                log.warning("tenant step failed", step=name, slug=tenant.slug, error=message)
                await self._note_failure(tenant, name, message)
                raise ApplicationError(
                    message, type=type(exc).__name__, non_retryable=isinstance(exc, PERMANENT)
                ) from None

        return activity.defn(name=name)(activity_)

    return decorate


class TenantSteps:
    """Every activity of tenancy's workflows, sharing the worker's database, bus client and
    metrics. `all()` is what the Temporal worker registers."""

    def __init__(
        self,
        db: Database,
        client: BusClient,
        metrics: Metrics,
        *,
        ini: Path,
        database_url: str,
        server: backups.Server,
        backup_dir: Path,
        faults: Faults | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.metrics = ProvisioningMetrics.declare(metrics)
        self.ini = ini
        self.revisions = tenant_revisions(ini)
        self.database_url = database_url
        self.server = server
        self.backup_dir = backup_dir
        self.faults = faults or Faults()
        self.cloner = schemas.Cloner()

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.create_schema,
            self.migrate_schema,
            self.seed_defaults,
            self.add_owner,
            self.mark_ready,
            self.drop_schema,
            self.mark_failed,
            self.back_up_schema,
            self.mark_deleted,
        ]

    # -- provisioning -----------------------------------------------------------------------
    @step("create_schema")
    async def create_schema(self, tenant: TenantInput) -> bool:
        """A copy of the template, unless the schema exists (a step run again). Returns whether
        it lacks migrations this worker knows (the template was a release behind)."""
        schema = schema_for(tenant.slug)
        async with self.db.session() as session:
            version = await self.cloner.clone(session, schema)
            if version is None:  # there already
                version = await schemas.version_of(session, schema)
            await self._record(session, tenant, "create_schema")
        return schema_rules.is_behind(version, self.revisions)

    @step("migrate_schema")
    async def migrate_schema(self, tenant: TenantInput) -> str | None:
        """Catch up with migrations the template lacked when it was cloned (a release between
        `saas migrate` and this worker's code). Run only when `create_schema` says so; checks
        again, since migrate-all may have been first."""
        schema = schema_for(tenant.slug)
        async with self.db.session() as session:
            version = await schemas.version_of(session, schema)  # created by the step before
            if not schema_rules.is_behind(version, self.revisions):
                await self._record(session, tenant, "migrate_schema")
                return version
        await schemas.upgrade_in_subprocess(self.ini, schema, self.database_url)
        async with self.db.session() as session:
            await self._record(session, tenant, "migrate_schema")
        return self.revisions[-1]

    @step("seed_defaults")
    async def seed_defaults(self, tenant: TenantInput) -> None:
        async with self.db.get_tenant_session(tenant.slug) as session:
            await session.execute(
                insert(settings)
                .values([{"key": k, "value": v} for k, v in DEFAULT_SETTINGS.items()])
                .on_conflict_do_nothing()
            )
            await self._record(session, tenant, "seed_defaults")

    @step("add_owner")
    async def add_owner(self, tenant: TenantInput) -> None:
        """The creator becomes the owner (identity; asking again changes nothing)."""
        if tenant.created_by is not None:
            request = AddOwner(tenant_id=tenant.tenant_id, user_id=tenant.created_by)
            await self.client.request("identity", "internal.add_owner", request, Membership)
        async with self.db.session() as session:
            await self._record(session, tenant, "add_owner")

    @step("mark_ready")
    async def mark_ready(self, tenant: TenantInput) -> None:
        """Ready, and `tenant.created` published, in one transaction: once per tenant."""
        async with self.db.session() as session:
            took = await self._provisioning_took(session, tenant)
            moved = await records.move(
                session, tenant.tenant_id, TenantStatus.READY, failure_reason=None
            )
            if moved is not None:
                created = TenantCreated(
                    tenant_id=tenant.tenant_id,
                    slug=tenant.slug,
                    name=tenant.name,
                    schema_name=schema_for(tenant.slug),
                )
                await publish(session, created, tenant_id=tenant.tenant_id, actor=WORKER)
            await self._record(session, tenant, "mark_ready", status="completed")
        if moved is not None and took is not None:
            self.metrics.duration.observe(took)

    @step("drop_schema")
    async def drop_schema(self, tenant: TenantInput) -> bool:
        """Compensation, or deletion after the backup. Never the schema of a ready tenant."""
        async with self.db.session() as session:
            # Never the schema of a ready tenant, nor one named by a tenant that does not exist
            # (its slug may be another tenant's).
            row = await records.by_id(session, tenant.tenant_id)
            if row is None or TenantStatus(row.status) not in DROPPABLE:
                status = row.status if row is not None else "missing"
                raise ServiceError(
                    ErrorCode.CONFLICT, f"refusing to drop the schema of a {status} tenant"
                )
            if row.slug != tenant.slug:
                raise ServiceError(ErrorCode.CONFLICT, "the tenant's slug is not the one given")
            dropped = await schemas.drop_schema(session, schema_for(tenant.slug))
            await self._record(session, tenant, "drop_schema")
        return dropped

    @step("mark_failed")
    async def mark_failed(self, failed: FailedStep) -> None:
        """Failed with the reason, and `tenant.provisioning_failed` published, once."""
        tenant = failed.tenant
        async with self.db.session() as session:
            moved = await records.move(
                session,
                tenant.tenant_id,
                TenantStatus.FAILED,
                only_from=frozenset({TenantStatus.PROVISIONING}),
                failure_reason=failed.reason,
            )
            if moved is not None:
                payload = TenantProvisioningFailed(
                    tenant_id=tenant.tenant_id, slug=tenant.slug, error=failed.reason
                )
                await publish(session, payload, tenant_id=tenant.tenant_id, actor=WORKER)
            await self._record(session, tenant, failed.step, status="failed", error=failed.reason)
        if moved is not None:
            self.metrics.failures.labels(failed.step).inc()

    # -- deletion ---------------------------------------------------------------------------
    @step("back_up_schema")
    async def back_up_schema(self, tenant: TenantInput) -> str:
        """pg_dump of the schema into BACKUP_DIR, recorded in `public.tenant_backups`; returns
        where it is ("" when there was no schema to back up: a failed tenant's)."""
        schema = schema_for(tenant.slug)
        # Named by the workflow id, one per tenant: an attempt run again rewrites the same file.
        path = backups.backup_path(self.backup_dir, schema, activity.info().workflow_id)
        async with self.db.session() as session:
            exists = await schemas.schema_exists(session, schema)
            version = await schemas.schema_version(session, schema) if exists else None
            taken = await self._deletion_backup(session, tenant)
        if exists:
            size = await backups.dump(self.server, schema, path, heartbeat=activity.heartbeat)
        async with self.db.session() as session:
            if exists and taken != str(path):
                await session.execute(
                    sa.insert(backups_table).values(
                        tenant_id=uuid.UUID(tenant.tenant_id),
                        location=str(path),
                        bytes=size,
                        schema_version=version,
                        reason="deletion",
                    )
                )
            await self._record(session, tenant, "back_up_schema")
        return str(path) if exists else (taken or "")

    @step("mark_deleted")
    async def mark_deleted(self, tenant: TenantInput) -> None:
        """Deleted, and `tenant.deleted` published (identity then drops its memberships)."""
        async with self.db.session() as session:
            moved = await records.move(
                session, tenant.tenant_id, TenantStatus.DELETED, deleted_at=sa.func.now()
            )
            if moved is not None:
                payload = TenantDeleted(tenant_id=tenant.tenant_id, slug=tenant.slug)
                await publish(session, payload, tenant_id=tenant.tenant_id, actor=WORKER)
            await self._record(session, tenant, "mark_deleted", status="completed")

    # -- records ----------------------------------------------------------------------------
    async def _record(
        self,
        session: AsyncSession,
        tenant: TenantInput,
        step_name: str,
        *,
        status: str = "running",
        error: str | None = None,
    ) -> None:
        """This run's row in `public.workflow_executions`: the last step done, its outcome."""
        info = activity.info()
        finished = sa.func.now() if status != "running" else None
        values = {
            "status": status,
            "step": step_name,
            "error_message": error,
            "updated_at": sa.func.now(),
            "finished_at": finished,
        }
        await session.execute(
            insert(workflow_executions)
            .values(
                tenant_id=uuid.UUID(tenant.tenant_id),
                workflow_type=info.workflow_type,
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id,
                **values,
            )
            .on_conflict_do_update(constraint="uq_workflow_executions_run", set_=values)
        )

    async def _note_failure(self, tenant: TenantInput, step_name: str, message: str) -> None:
        """Best effort: the last error of a step that will be retried (or compensated)."""
        try:
            info = activity.info()
            async with self.db.session() as session:
                await session.execute(
                    sa.update(workflow_executions)
                    .where(
                        workflow_executions.c.workflow_id == info.workflow_id,
                        workflow_executions.c.run_id == info.workflow_run_id,
                    )
                    .values(
                        error_message=f"{step_name} (attempt {info.attempt}): {message}"[:1000],
                        updated_at=sa.func.now(),
                    )
                )
        except Exception as exc:  # the database may be what failed
            log.debug("could not note a step's failure", step=step_name, error=repr(exc))

    async def _provisioning_took(self, session: AsyncSession, tenant: TenantInput) -> float | None:
        """Seconds since this provisioning began (its creation or retry), by the database's clock."""
        since = (
            await session.execute(
                sa.select(
                    sa.extract("epoch", sa.func.clock_timestamp() - tenants.c.status_changed_at)
                ).where(
                    tenants.c.id == uuid.UUID(tenant.tenant_id),
                    tenants.c.status == TenantStatus.PROVISIONING.value,
                )
            )
        ).scalar()
        return float(since) if since is not None else None

    async def _deletion_backup(self, session: AsyncSession, tenant: TenantInput) -> str | None:
        found = await session.execute(
            sa.select(backups_table.c.location)
            .where(
                backups_table.c.tenant_id == uuid.UUID(tenant.tenant_id),
                backups_table.c.reason == "deletion",
            )
            .order_by(backups_table.c.taken_at.desc())
            .limit(1)
        )
        return found.scalar()
