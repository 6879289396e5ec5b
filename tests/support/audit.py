"""Helpers for audit log tests: events to append, and appending them as the service does."""

from __future__ import annotations

from saas.audit import store
from saas.common.db import Database
from saas.common.events import Actor, EventEnvelope, new_event
from saas.common.events.catalogue import ProjectCreated


def events_for(tenant: str, count: int, actor: str = "u-1", start: int = 0) -> list[EventEnvelope]:
    return [
        new_event(
            ProjectCreated(tenant_id=tenant, project_id=str(n), name=f"p{n}"),
            source="saas/tenancy",
            actor=Actor.user(actor),
            tenant_id=tenant,
            correlation_id=f"req-{n}",
        )
        for n in range(start, start + count)
    ]


async def append(db: Database, batch: list[EventEnvelope]) -> None:
    async with db.session() as session:
        await store.append(session, batch)
