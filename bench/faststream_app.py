"""The FastStream consumers our pipeline is compared with, each as a process of its own.

Written the way FastStream's documentation shows them, with what a team would add for a durable
consumer that writes to PostgreSQL and nothing more: a durable pull subscriber on a JetStream
stream, the message validated into a pydantic model, a five-column INSERT ... ON CONFLICT DO
NOTHING through SQLAlchemy 2 async (asyncpg) in a transaction, and FastStream's own acks (after
the handler returns). No outbox, no relay, no hash chain, no processed-ids table, no dead
letters, no failure counting.

- `batch`: `PullSub(batch_size=500, batch=True)`: the handler gets up to 500 events and inserts
  them in one transaction;
- `message`: `PullSub(batch_size=500)`: the handler gets one event and inserts it in a
  transaction of its own (FastStream runs a fetched batch's handlers concurrently).

    FS_IDIOM=batch FS_STREAM=... FS_SUBJECT=... FS_DURABLE=... FS_TABLE=... \\
    NATS_URL=... DATABASE_URL=... python bench/faststream_app.py
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from faststream import FastStream
from faststream.nats import JStream, NatsBroker, PullSub
from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import create_async_engine

SCHEMA = "faststream_bench"


class Event(BaseModel):
    """What the consumer reads of an event; other fields are ignored."""

    id: uuid.UUID
    type: str
    tenant_id: str | None = None
    time: datetime
    data: dict[str, Any]


def events_table(name: str) -> sa.Table:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("tenant_key", sa.String, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema=SCHEMA,
    )


def row(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "type": event.type,
        "tenant_key": event.tenant_id or "",
        "occurred_at": event.time,
        "payload": event.data,
    }


def build() -> FastStream:
    broker = NatsBroker(os.environ["NATS_URL"])  # the `ops` user, its password in the URL
    engine = create_async_engine(os.environ["DATABASE_URL"])
    table = events_table(os.environ["FS_TABLE"])
    stream = JStream(os.environ["FS_STREAM"], declare=False)  # the bench created it
    subject, durable = os.environ["FS_SUBJECT"], os.environ["FS_DURABLE"]

    if os.environ["FS_IDIOM"] == "batch":

        @broker.subscriber(
            subject, stream=stream, durable=durable, pull_sub=PullSub(batch_size=500, batch=True)
        )
        async def handle_batch(events: list[Event]) -> None:
            async with engine.begin() as connection:
                await connection.execute(
                    insert(table).on_conflict_do_nothing(), [row(e) for e in events]
                )

    else:

        @broker.subscriber(
            subject, stream=stream, durable=durable, pull_sub=PullSub(batch_size=500)
        )
        async def handle_one(event: Event) -> None:
            async with engine.begin() as connection:
                await connection.execute(insert(table).on_conflict_do_nothing(), [row(event)])

    app = FastStream(broker)

    @app.after_shutdown
    async def close_engine() -> None:
        await engine.dispose()

    return app


if __name__ == "__main__":
    asyncio.run(build().run())
