"""The audit service's bus operations and its event handler."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from saas.audit import checkpoints, store
from saas.common.bus import Bus, RequestContext, Responder
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


def register(responder: Responder, db: Database, bus: Bus) -> None:
    @responder.operation("query", AuditQuery)
    async def query(request: AuditQuery, ctx: RequestContext) -> AuditPage:
        require_tenant_reader(ctx, request.tenant_id)
        async with db.session() as session:
            return await store.query(session, request)

    @responder.operation("verify", AuditVerifyRequest)
    async def verify(request: AuditVerifyRequest, ctx: RequestContext) -> AuditVerification:
        require_tenant_reader(ctx, request.tenant_id)
        # Checkpoints first: anything appended meanwhile only makes the chain longer.
        known = await checkpoints.read(bus.js, request.tenant_id)
        async with db.session() as session:
            return await store.verify(session, request.tenant_id, checkpoints=known)


def make_event_handler(metrics: Metrics, on_committed: Callable[[Iterable[str]], None]):
    """The consumer's handler: appends each batch; once its transaction commits, hands the
    chains it appended to to `on_committed` (the checkpoint publisher's `mark`)."""
    failures = metrics.counter("audit_log_failures_total", "Batches the audit log failed to append")
    appended = metrics.counter("audit_log_entries_total", "Entries appended to the audit log")

    async def on_events(session: AsyncSession, batch: list[EventEnvelope]) -> None:
        try:
            appended.inc(await store.append(session, batch))
        except Exception:
            failures.inc()
            raise
        chains = {e.tenant_id or "" for e in batch}
        event.listen(
            session.sync_session, "after_commit", lambda _: on_committed(chains), once=True
        )

    return on_events
