"""The audit service's bus operations and its event handler."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from saas.audit import store
from saas.common.bus import RequestContext, Responder
from saas.common.contracts.audit import AuditPage, AuditQuery, AuditVerification, AuditVerifyRequest
from saas.common.db import Database
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import EventEnvelope
from saas.common.metrics import Metrics

READER_ROLES = {"owner", "admin"}


def require_tenant_reader(ctx: RequestContext, tenant_id: str) -> None:
    """The gateway verified the principal; audit re-checks it is an owner or admin of this tenant."""
    p = ctx.principal
    if p is None:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "no authenticated principal on the request")
    if p.tenant_id != tenant_id:
        raise ServiceError(ErrorCode.FORBIDDEN, "not a member of this tenant")
    if p.role not in READER_ROLES:
        raise ServiceError(
            ErrorCode.FORBIDDEN, "reading the audit log needs the owner or admin role"
        )


def register(responder: Responder, db: Database) -> None:
    @responder.operation("query", AuditQuery)
    async def query(request: AuditQuery, ctx: RequestContext) -> AuditPage:
        require_tenant_reader(ctx, request.tenant_id)
        async with db.session() as session:
            return await store.query(session, request)

    @responder.operation("verify", AuditVerifyRequest)
    async def verify(request: AuditVerifyRequest, ctx: RequestContext) -> AuditVerification:
        require_tenant_reader(ctx, request.tenant_id)
        async with db.session() as session:
            return await store.verify(session, request.tenant_id)


def make_event_handler(metrics: Metrics):
    failures = metrics.counter("audit_log_failures_total", "Batches the audit log failed to append")
    appended = metrics.counter("audit_log_entries_total", "Entries appended to the audit log")

    async def on_events(session: AsyncSession, batch: list[EventEnvelope]) -> None:
        try:
            appended.inc(await store.append(session, batch))
        except Exception:
            failures.inc()
            raise

    return on_events
