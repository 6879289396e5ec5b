"""The transactional outbox: the one way a service publishes an event.

    async with db.session() as session:
        ...change state...
        await outbox.add(session, new_event(TenantCreated(...), source=..., actor=...))

The row commits or rolls back with the state change; `OutboxRelay` publishes it afterwards.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.events.envelope import EventEnvelope
from saas.common.events.tables import outbox_table
from saas.common.tenant_names import quote_schema


def channel_for(schema: str) -> str:
    return f"outbox_{schema}"


class Outbox:
    """A service's outbox table, in the schema the service owns."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.table = outbox_table(schema)
        self.channel = channel_for(schema)
        # One statement for the rows and the wake-up: a row per event in one execution (an
        # executemany runs the INSERT once per row), in the events' order (the relay's `seq`).
        self._add = text(
            f"""
            WITH added AS (
                INSERT INTO {quote_schema(schema)}.outbox (event_id, type, tenant_key, body)
                SELECT e.id, e.type, e.tenant, e.body
                FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[]),
                            CAST(:tenants AS text[]), CAST(:bodies AS bytea[]))
                     WITH ORDINALITY AS e(id, type, tenant, body, n)
                ORDER BY e.n
            )
            SELECT pg_notify(:channel, '')
            """  # noqa: S608 - a quoted, validated schema
        )

    async def add(self, session: AsyncSession, *events: EventEnvelope) -> None:
        """Write events in the caller's transaction, and wake the relay when it commits (a
        notification is delivered only on commit; repeated ones are folded into one)."""
        if not events:
            return
        await session.execute(
            self._add,
            {
                "ids": [e.id for e in events],  # canonical: the database reads them as uuids
                "types": [e.type for e in events],
                "tenants": [e.tenant_id or "" for e in events],
                "bodies": [e.to_bytes() for e in events],
                "channel": self.channel,
            },
        )
