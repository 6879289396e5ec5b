"""Operating the outbox's quarantine: see which rows the relay set aside and why, and retry them.

The relay quarantines a row after `OUTBOX_MAX_ATTEMPTS` failures of its own (see
`saas.common.events.verdicts`); the row is kept, with its last error, and nothing publishes it
until someone retries it. Retrying gives it a fresh set of attempts and wakes the relay. The
tenant's later events were published while it was set aside, so consumers receive it after them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from saas.common.db import Database
from saas.common.events.outbox import channel_for
from saas.common.events.tables import outbox_table
from saas.common.tenant_names import validate_identifier


@dataclass(frozen=True)
class QuarantinedRow:
    seq: int
    event_id: str
    subject: str
    tenant: str
    attempts: int
    last_error: str
    created_at: datetime
    quarantined_at: datetime


async def quarantined(db: Database, schema: str) -> list[QuarantinedRow]:
    """The quarantined rows of `schema`'s outbox, oldest first."""
    t = outbox_table(validate_identifier(schema))
    query = (
        select(t).where(t.c.quarantined_at.is_not(None), t.c.sent_at.is_(None)).order_by(t.c.seq)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return [
        QuarantinedRow(
            seq=r.seq,
            event_id=str(r.event_id),
            subject=r.type,
            tenant=r.tenant_key,
            attempts=r.attempts,
            last_error=r.last_error or "",
            created_at=r.created_at,
            quarantined_at=r.quarantined_at,
        )
        for r in rows
    ]


async def retry(db: Database, schema: str, seqs: set[int] | None = None) -> list[int]:
    """Release quarantined rows (those in `seqs`, or all) for the relay; returns their sequences."""
    t = outbox_table(validate_identifier(schema))
    release = (
        update(t)
        .where(t.c.quarantined_at.is_not(None), t.c.sent_at.is_(None))
        .values(quarantined_at=None, attempts=0)
        .returning(t.c.seq)
    )
    if seqs is not None:
        release = release.where(t.c.seq.in_(seqs))
    async with db.session() as session:
        done = sorted((await session.execute(release)).scalars())
        if done:  # wake the relay when this commits, as a new event would
            await session.execute(select(func.pg_notify(channel_for(schema), "")))
    return done
