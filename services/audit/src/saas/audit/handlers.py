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
from saas.common.memberships import MANAGERS, Memberships
from saas.common.metrics import Metrics

NO_TENANT = ""  # the chain of events that belong to no tenant


async def require_reader(memberships: Memberships, ctx: RequestContext, tenant_id: str) -> None:
    """A tenant's log is for its owners and admins; the events of no tenant (logins, resets) are
    for platform admins. The caller is whoever their token proves, their role what identity says."""
    if tenant_id == NO_TENANT:
        user = await ctx.user()
        if not user.platform_admin:
            raise ServiceError(ErrorCode.FORBIDDEN, "only platform admins read events of no tenant")
        return
    await memberships.require(ctx, tenant_id, MANAGERS)


def register(responder: Responder, db: Database, bus: Bus, memberships: Memberships) -> None:
    @responder.operation("query", AuditQuery)
    async def query(request: AuditQuery, ctx: RequestContext) -> AuditPage:
        await require_reader(memberships, ctx, request.tenant_id)
        async with db.session() as session:
            return await store.query(session, request)

    @responder.operation("verify", AuditVerifyRequest)
    async def verify(request: AuditVerifyRequest, ctx: RequestContext) -> AuditVerification:
        await require_reader(memberships, ctx, request.tenant_id)
        # Checkpoints first: anything appended meanwhile only makes the chain longer.
        known = await checkpoints.read(bus.js, request.tenant_id)
        async with db.session() as session:
            return await store.verify(
                session,
                request.tenant_id,
                checkpoints=known,
                cursor=request.cursor,
                max_entries=request.max_entries,
            )


def make_event_handler(metrics: Metrics, on_committed: Callable[[Iterable[str]], None]):
    """The consumer's handler: appends the events of each batch the log does not hold yet and
    returns them (the log is the consumer's record of processed events: see `store.append`);
    once its transaction commits, hands the chains it appended to to `on_committed` (the
    checkpoint publisher's `mark`)."""
    failures = metrics.counter("audit_log_failures_total", "Batches the audit log failed to append")
    appended = metrics.counter("audit_log_entries_total", "Entries appended to the audit log")

    async def on_events(session: AsyncSession, batch: list[EventEnvelope]) -> list[EventEnvelope]:
        try:
            fresh = await store.append(session, batch)
        except Exception:
            failures.inc()
            raise
        appended.inc(len(fresh))
        chains = {e.tenant_id or "" for e in fresh}
        if chains:
            event.listen(
                session.sync_session, "after_commit", lambda _: on_committed(chains), once=True
            )
        return fresh

    return on_events
