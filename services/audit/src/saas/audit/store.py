"""audit.events: appending under a per-tenant lock, querying, and walking the chain."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from saas.audit.chain import (
    CHAINED_FIELDS,
    GENESIS,
    BrokenLink,
    Checkpoint,
    canonical_new,
    first_broken_link,
    index_checkpoints,
    link_hash,
    missing_tail,
)
from saas.common.contracts.audit import (
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditVerification,
    BrokenLinkReport,
)
from saas.common.db import Database
from saas.common.errors import ErrorCode, ServiceError
from saas.common.events import EventEnvelope
from saas.common.tenant_names import quote_schema

SCHEMA = "audit"  # the schema this service owns (alembic.ini's [audit] names it for migrations)
metadata = sa.MetaData()
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid),
    sa.Column("tenant_key", sa.String),
    sa.Column("tenant_seq", sa.BigInteger),
    sa.Column("type", sa.String),
    sa.Column("source", sa.String),
    sa.Column("subject", sa.String),
    sa.Column("actor_type", sa.String),
    sa.Column("actor_id", sa.String),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("correlation_id", sa.String),
    sa.Column("data_version", sa.Integer),
    sa.Column("payload", JSONB),
    sa.Column("entry", sa.LargeBinary),  # the canonical bytes the hash covers
    sa.Column("prev_hash", sa.CHAR(64)),
    sa.Column("hash", sa.CHAR(64)),
    schema=SCHEMA,
)
LOCK_LANE = "audit.events"
VERIFY_PAGE = 1000


def entry_from_event(event: EventEnvelope, tenant_seq: int) -> dict[str, Any]:
    """The chained fields of an event's entry. Its id stays the string the envelope made canonical:
    the database takes it for a uuid as it is, and the canonical bytes hold that same string."""
    return {
        "event_id": event.id,
        "tenant_key": event.tenant_id or "",
        "tenant_seq": tenant_seq,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "actor_type": event.actor.type,
        "actor_id": event.actor.id,
        "occurred_at": event.time,
        "correlation_id": event.correlation_id,
        "data_version": event.dataversion,
        "payload": event.data,
    }


_LOCK_TENANTS = sa.text(
    "SELECT pg_advisory_xact_lock(hashtext(:lane), hashtext(t.key)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(key, ord) ORDER BY t.ord"
)
_HEADS = sa.text(
    "SELECT t.key, h.tenant_seq, h.hash FROM unnest(CAST(:keys AS text[])) AS t(key) "  # noqa: S608 - a quoted, validated schema
    f"LEFT JOIN LATERAL (SELECT tenant_seq, hash FROM {quote_schema(SCHEMA)}.events e "
    "WHERE e.tenant_key = t.key ORDER BY tenant_seq DESC LIMIT 1) h ON true"
)


# The chain heads, and which of the batch's events the log already holds: one statement, so one
# snapshot, taken once the tenants are locked.
_HEADS_AND_KNOWN = sa.text(
    "SELECT t.key, h.tenant_seq, h.hash, NULL::uuid AS known "  # noqa: S608 - a quoted, validated schema
    "FROM unnest(CAST(:keys AS text[])) AS t(key) "
    f"LEFT JOIN LATERAL (SELECT tenant_seq, hash FROM {quote_schema(SCHEMA)}.events e "
    "WHERE e.tenant_key = t.key ORDER BY tenant_seq DESC LIMIT 1) h ON true "
    "UNION ALL SELECT NULL, NULL, NULL, e.event_id "
    f"FROM {quote_schema(SCHEMA)}.events e WHERE e.event_id = ANY(CAST(:ids AS uuid[]))"
)


async def append(session: AsyncSession, batch: list[EventEnvelope]) -> list[EventEnvelope]:
    """Chain and insert the batch's events that the log does not hold yet; returns those.

    Every tenant in the batch is locked first, in sorted order (so replicas never deadlock), and
    only then, in a new statement and so a new snapshot, are the chain heads and the events
    already logged read: a tenant's chain never forks, and an event is never logged twice (an
    event is logged under its tenant's lock, so whoever logged it before has committed). The
    log is thus the audit consumer's record of the events it processed. Two round trips
    whatever the number of tenants."""
    keys = sorted({event.tenant_id or "" for event in batch})
    await session.execute(_LOCK_TENANTS, {"lane": LOCK_LANE, "keys": keys})
    heads: dict[str, tuple[int | None, str | None]] = {}
    known: set[str] = set()
    found = await session.execute(_HEADS_AND_KNOWN, {"keys": keys, "ids": [e.id for e in batch]})
    for r in found:
        if r.key is None:
            known.add(str(r.known))
        else:
            heads[r.key] = (r.tenant_seq, r.hash)
    by_tenant: dict[str, list[EventEnvelope]] = defaultdict(list)
    fresh: list[EventEnvelope] = []
    for event in batch:
        if event.id not in known:  # nor twice from one batch
            known.add(event.id)
            fresh.append(event)
            by_tenant[event.tenant_id or ""].append(event)
    records: list[tuple[Any, ...]] = []
    for tenant_key in sorted(by_tenant):
        seq, prev = heads.get(tenant_key, (None, None))
        if seq is None:
            seq, prev = 0, GENESIS
        for event in by_tenant[tenant_key]:
            seq += 1
            entry = entry_from_event(event, seq)
            stored = canonical_new(entry)
            digest = link_hash(prev, stored)
            records.append(_copy_record(entry, stored, prev, digest))
            prev = digest
    if records:
        await _copy(session, records)
    return fresh


COPY_COLUMNS = (*CHAINED_FIELDS, "entry", "prev_hash", "hash")
_BEFORE_PAYLOAD = CHAINED_FIELDS[:-1]
assert CHAINED_FIELDS[-1] == "payload"


def _copy_record(entry: dict[str, Any], stored: bytes, prev: str, digest: str) -> tuple[Any, ...]:
    """A row as COPY takes it (`COPY_COLUMNS`): the payload as JSON text, which JSONB reads."""
    payload = orjson.dumps(entry["payload"]).decode()
    return (*(entry[f] for f in _BEFORE_PAYLOAD), payload, stored, prev, digest)


async def _copy(session: AsyncSession, records: list[tuple[Any, ...]]) -> None:
    """COPY the batch in the session's transaction: several times faster than a multi-row INSERT,
    and it needs no more than the INSERT privilege the audit role has."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(
        "events", schema_name=SCHEMA, columns=COPY_COLUMNS, records=records
    )


def _encode_cursor(tenant_seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"s": tenant_seq})).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["s"]
        if not isinstance(value, int) or value < 1:
            raise ValueError
        return value
    except Exception:
        raise ServiceError(ErrorCode.BAD_REQUEST, "cursor is not one this service issued") from None


async def query(session: AsyncSession, q: AuditQuery) -> AuditPage:
    """Newest first; `next_cursor` continues where the page ended."""
    stmt = sa.select(events).where(events.c.tenant_key == q.tenant_id)
    if q.types:
        stmt = stmt.where(events.c.type.in_(q.types))
    if q.actor_id:
        stmt = stmt.where(events.c.actor_id == q.actor_id)
    if q.since:
        stmt = stmt.where(events.c.occurred_at >= q.since)
    if q.until:
        stmt = stmt.where(events.c.occurred_at < q.until)
    if q.cursor:
        stmt = stmt.where(events.c.tenant_seq < _decode_cursor(q.cursor))
    rows = (
        (await session.execute(stmt.order_by(events.c.tenant_seq.desc()).limit(q.limit + 1)))
        .mappings()
        .all()
    )
    items = [
        AuditEntry.model_validate({**r, "event_id": str(r["event_id"])}) for r in rows[: q.limit]
    ]
    next_cursor = _encode_cursor(items[-1].tenant_seq) if len(rows) > q.limit else None
    return AuditPage(items=items, next_cursor=next_cursor)


def _encode_walk(after: int, prev: str, checked: int) -> str:
    doc = orjson.dumps({"a": after, "p": prev, "c": checked})
    return base64.urlsafe_b64encode(doc).decode().rstrip("=")


def _decode_walk(cursor: str) -> tuple[int, str, int]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after, prev, checked = int(doc["a"]), str(doc["p"]), int(doc["c"])
        if after < 0 or checked < 0 or len(prev) != 64:
            raise ValueError
        return after, prev, checked
    except Exception:
        raise ServiceError(ErrorCode.BAD_REQUEST, "cursor is not one this service issued") from None


async def verify(
    session: AsyncSession,
    tenant_id: str,
    *,
    checkpoints: Sequence[Checkpoint],
    cursor: str | None = None,
    max_entries: int | None = None,
) -> AuditVerification:
    """Walk the tenant's chain against its `checkpoints` (`checkpoints.read`) and report the first
    broken link, or the entries a checkpoint proves are missing at its end. With `max_entries`,
    stop after about that many and return a cursor to go on from (in another transaction)."""
    index = index_checkpoints(checkpoints)
    after, prev, checked = _decode_walk(cursor) if cursor else (0, GENESIS, 0)
    expected, walked = after + 1, 0

    def verdict(broken: BrokenLink | None, *, more: bool = False) -> AuditVerification:
        report = BrokenLinkReport(**broken.__dict__) if broken is not None else None
        return AuditVerification(
            tenant_id=tenant_id,
            ok=broken is None,
            checked=checked,
            checkpoints=len(checkpoints),
            first_broken=report,
            complete=not more,
            next_cursor=_encode_walk(after, prev, checked) if more else None,
        )

    while True:
        if max_entries is not None and walked >= max_entries:
            return verdict(None, more=True)
        page = (
            (
                await session.execute(
                    sa.select(events)
                    .where(events.c.tenant_key == tenant_id, events.c.tenant_seq > after)
                    .order_by(events.c.tenant_seq)
                    .limit(VERIFY_PAGE)
                )
            )
            .mappings()
            .all()
        )
        if not page:
            return verdict(missing_tail(checked, index))
        broken, prev, expected = first_broken_link(
            page, prev_hash=prev, expected_seq=expected, checkpoints=index
        )
        if broken is not None:
            checked += sum(1 for r in page if r["tenant_seq"] < broken.tenant_seq)
            return verdict(broken)
        checked += len(page)
        walked += len(page)
        after = page[-1]["tenant_seq"]


async def verify_in_pages(
    db: Database, tenant_id: str, *, checkpoints: Sequence[Checkpoint], page: int = 20_000
) -> AuditVerification:
    """The whole chain, a transaction per `page` entries (operators' checks of long chains)."""
    result = AuditVerification(tenant_id=tenant_id, ok=True, checked=0, complete=False)
    while not result.complete:
        async with db.session() as session:
            result = await verify(
                session,
                tenant_id,
                checkpoints=checkpoints,
                cursor=result.next_cursor,
                max_entries=page,
            )
    return result


_ALL_HEADS = sa.text(
    "SELECT DISTINCT ON (tenant_key) tenant_key AS key, tenant_seq, hash "  # noqa: S608 - a quoted, validated schema
    f"FROM {quote_schema(SCHEMA)}.events ORDER BY tenant_key, tenant_seq DESC"
)


async def chain_heads(
    session: AsyncSession, tenant_keys: Iterable[str] | None
) -> list[tuple[str, Checkpoint]]:
    """Each named chain's length and last hash (every chain's when `tenant_keys` is None)."""
    if tenant_keys is None:
        result = await session.execute(_ALL_HEADS)
    else:
        result = await session.execute(_HEADS, {"keys": sorted(tenant_keys)})
    return [(r.key, Checkpoint(r.tenant_seq, r.hash.strip())) for r in result if r.tenant_seq]


async def tenant_keys(session: AsyncSession) -> list[str]:
    """Every chain in the log, the one of events without a tenant ("") included."""
    query = sa.select(events.c.tenant_key).distinct().order_by(events.c.tenant_key)
    return list((await session.execute(query)).scalars())
