"""Tenancy's events: the one call that publishes them, through its outbox in `public`, in the
transaction that makes the change (the tenancy service's relay sends them to JetStream)."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.events import Actor, new_event
from saas.common.events.outbox import Outbox
from saas.tenancy.store.tables import SCHEMA

SOURCE = "saas/tenancy"
OUTBOX = Outbox(SCHEMA)
WORKER = Actor.system("tenancy-worker")


async def publish(
    session: AsyncSession,
    payload: BaseModel,
    *,
    tenant_id: str,
    actor: Actor,
    correlation_id: str | None = None,
    subject: str | None = None,
) -> None:
    await OUTBOX.add(
        session,
        new_event(
            payload,
            source=SOURCE,
            actor=actor,
            tenant_id=tenant_id,
            subject=subject,
            correlation_id=correlation_id,
        ),
    )
