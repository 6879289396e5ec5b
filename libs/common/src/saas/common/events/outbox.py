"""The transactional outbox: the one way a service publishes an event.

    async with db.session() as session:
        ...change state...
        await outbox.add(session, new_event(TenantCreated(...), source=..., actor=...))

The row commits or rolls back with the state change; `OutboxRelay` publishes it afterwards.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.events.envelope import EventEnvelope
from saas.common.events.tables import outbox_table


def channel_for(schema: str) -> str:
    return f"outbox_{schema}"


class Outbox:
    """A service's outbox table, in the schema the service owns."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.table = outbox_table(schema)
        self.channel = channel_for(schema)

    async def add(self, session: AsyncSession, *events: EventEnvelope) -> None:
        """Write events in the caller's transaction, and wake the relay when it commits."""
        if not events:
            return
        await session.execute(
            insert(self.table),
            [
                {
                    "event_id": uuid.UUID(e.id),
                    "type": e.type,
                    "tenant_key": e.tenant_id or "",
                    "body": e.to_bytes(),
                }
                for e in events
            ],
        )
        # Delivered only if the transaction commits; repeated notifications are folded into one.
        await session.execute(select(func.pg_notify(self.channel, "")))
