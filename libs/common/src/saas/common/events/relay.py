"""The outbox relay: publishes committed outbox rows to JetStream, marks them sent after the ack.

- Wakes on LISTEN/NOTIFY, polls as a fallback.
- Claims rows with `FOR UPDATE SKIP LOCKED`, so several replicas can run. Each claim also takes a
  transaction-level advisory lock per tenant, skips tenants another replica holds, and never
  takes a tenant's rows past an older one it left out: a tenant's events are only ever published
  by one relay at a time, oldest first, so order per tenant holds.
- Publishes a batch with `Nats-Msg-Id` = event id and waits for every ack before marking; a
  crash between publish and mark republishes, and JetStream drops the duplicate (within its
  duplicate window; beyond it, consumers' processed-event records drop it).
- Judges every row on its own (`saas.common.events.verdicts`): acknowledged rows are marked
  sent; a row refused for a reason of its own has its attempt and error recorded and, after
  `max_attempts`, is quarantined (kept, never pruned, not claimed again) so the others go on;
  an outage counts against no row. A tenant's rows after its failed row wait for it.
- Backs off while NATS or the database is down; exposes pending count, oldest unsent age and
  the number of quarantined rows.
- Drains the outbox once more when it stops, so what the last requests wrote is published.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import text

from saas.common.bus import Bus
from saas.common.bus.jetstream import Message
from saas.common.components import Component
from saas.common.db import Database
from saas.common.events.outbox import channel_for
from saas.common.events.stream import EVENTS_STREAM
from saas.common.events.verdicts import (
    Unpublishable,
    Verdict,
    describe,
    judge,
    marked_sent,
    needs_evidence,
    refusal,
    stream_answered,
)
from saas.common.lifecycle import backoff
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings
from saas.common.tenant_names import quote_schema

if TYPE_CHECKING:
    from saas.common.process import ServiceProcess

log = get_logger(__name__)

PROBE_TIMEOUT = 2.0  # seconds to ask JetStream whether the stream is there


@dataclass(frozen=True)
class Batch:
    """What one pass did: rows claimed, marked sent, failed on their own, failed in an outage."""

    claimed: int = 0
    sent: int = 0
    faults: int = 0
    outages: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.faults or self.outages)


class OutboxRelay(Component):
    """Publishes one schema's outbox. As a component: it runs until `stop`, which comes after
    in-flight requests have finished, so what the last requests wrote is still published."""

    @classmethod
    def for_process(cls, process: ServiceProcess, schema: str) -> OutboxRelay:
        """The relay of `schema`'s outbox, configured from the process's `EventSettings`."""
        s = process.settings
        if not isinstance(s, EventSettings):
            raise TypeError(f"{process.name}'s settings do not include EventSettings")
        return cls(
            process.db,
            process.bus,
            schema,
            metrics=process.metrics,
            batch_size=s.outbox_batch_size,
            poll_interval=s.outbox_poll_interval,
            max_attempts=s.outbox_max_attempts,
        )

    def __init__(
        self,
        db: Database,
        bus: Bus,
        schema: str,
        *,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        publish_timeout: float = 10.0,
        retention_seconds: float = 86400.0,
        max_attempts: int = 5,
    ) -> None:
        self.name = f"outbox-relay:{schema}"
        self.db = db
        self.bus = bus
        self.schema = schema
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publish_timeout = publish_timeout
        self.retention_seconds = retention_seconds
        self.max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        table = f"{quote_schema(schema)}.outbox"
        # The advisory locks are tried row by row, so another relay's commit can land in the
        # middle of the scan: a tenant's older rows skipped while it held them, its newer rows
        # taken once it let go. So a claimed row is kept only if no older row of its tenant was
        # skipped; the rest stay locked until this transaction ends and wait for the next pass.
        self._claim = text(
            f"""
            WITH claimed AS MATERIALIZED (
                SELECT seq, event_id, type, tenant_key, body FROM {table}
                WHERE sent_at IS NULL AND quarantined_at IS NULL
                  AND pg_try_advisory_xact_lock(hashtext(:lane), hashtext(tenant_key))
                ORDER BY seq
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            ),
            skipped AS MATERIALIZED (  -- what the claim's scan passed over
                SELECT seq, tenant_key FROM {table}
                WHERE sent_at IS NULL AND quarantined_at IS NULL
                  AND seq < (SELECT max(seq) FROM claimed)
                  AND seq NOT IN (SELECT seq FROM claimed)
                ORDER BY seq
            )
            SELECT c.* FROM claimed AS c
            WHERE NOT EXISTS (
                SELECT 1 FROM skipped AS s WHERE s.tenant_key = c.tenant_key AND s.seq < c.seq
            )
            ORDER BY c.seq
            """  # noqa: S608 - a quoted, validated schema
        )
        self._mark = text(f"UPDATE {table} SET sent_at = now() WHERE seq = ANY(:seqs)")  # noqa: S608
        self._record_faults = text(
            f"""
            UPDATE {table} AS o
            SET attempts = o.attempts + 1, last_error = f.error,
                quarantined_at = CASE WHEN o.attempts + 1 >= :max_attempts THEN now() END
            FROM unnest(CAST(:seqs AS bigint[]), CAST(:errors AS text[])) AS f(seq, error)
            WHERE o.seq = f.seq
            RETURNING o.seq, o.event_id, o.type, o.attempts, o.quarantined_at IS NOT NULL AS quarantined
            """  # noqa: S608
        )
        # Quarantined rows are not pending (nothing will publish them): they are counted apart.
        self._lag = text(
            f"""
            SELECT count(*) FILTER (WHERE quarantined_at IS NULL),
                   coalesce(extract(epoch FROM now()
                       - min(created_at) FILTER (WHERE quarantined_at IS NULL)), 0),
                   count(*) FILTER (WHERE quarantined_at IS NOT NULL)
            FROM {table} WHERE sent_at IS NULL
            """  # noqa: S608
        )
        self._prune = text(
            f"DELETE FROM {table} WHERE sent_at < now() - make_interval(secs => :secs)"  # noqa: S608
        )
        self._lane = f"outbox:{schema}"
        m = metrics or Metrics()
        self.published = m.counter(
            "outbox_published_total", "Events published from the outbox", ("schema",)
        )
        self.failures = m.counter(
            "outbox_publish_failures_total", "Failed relay batches", ("schema",)
        )
        self.pending = m.gauge(
            "outbox_pending", "Events written but not yet acknowledged by JetStream", ("schema",)
        )
        self.oldest = m.gauge(
            "outbox_oldest_unsent_age_seconds", "Age of the oldest unsent event", ("schema",)
        )
        self.quarantined = m.gauge(
            "outbox_quarantined",
            "Events set aside after failing on their own (saas events outbox list)",
            ("schema",),
        )

    # -- one pass -----------------------------------------------------------------------------
    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many events were marked sent."""
        return (await self.relay_batch()).sent

    async def relay_batch(self) -> Batch:
        """Claim up to one batch, publish it, and record each row's verdict in the same transaction."""
        async with self.db.session() as session:
            rows = (
                await session.execute(self._claim, {"lane": self._lane, "limit": self.batch_size})
            ).all()
            if not rows:
                return Batch()
            outcomes, verdicts = await self._publish_and_judge(rows)
            marks = marked_sent([r.tenant_key for r in rows], verdicts)
            sent = [r.seq for r, mark in zip(rows, marks, strict=True) if mark]
            if sent:
                await session.execute(self._mark, {"seqs": sent})
            faults = [
                (r, describe(o, r.type))
                for r, o, v in zip(rows, outcomes, verdicts, strict=True)
                if v is Verdict.FAULT
            ]
            if faults:
                await self._record(session, faults)
        self.published.labels(self.schema).inc(len(sent))
        return Batch(
            claimed=len(rows),
            sent=len(sent),
            faults=len(faults),
            outages=verdicts.count(Verdict.OUTAGE),
        )

    async def _publish_and_judge(self, rows: list[Any]) -> tuple[list[object], list[Verdict]]:
        """Each row's outcome and verdict. A failure that may be the stream's rather than the
        row's is blamed on the row only if the connection held and the stream shows it works."""
        nc = self.bus.nc
        reconnects = nc.stats["reconnects"]
        outcomes = await self._publish(rows)
        held = nc.is_connected and nc.stats["reconnects"] == reconnects
        return outcomes, judge(outcomes, stream_works=held and await self._stream_works(outcomes))

    async def _publish(self, rows: list[Any]) -> list[object]:
        """Publish the batch in order; each row's outcome is its `PubAck` or why it failed.

        What the relay refuses is not sent; the rest go out in one write (`JetStream.
        publish_batch`), and every ack is awaited within `publish_timeout`. A client that is not
        connected is handed nothing (it is republished later anyway)."""
        nc = self.bus.nc
        outcomes: list[object] = [None] * len(rows)
        sendable: list[int] = []
        for i, r in enumerate(rows):
            if reason := refusal(r.type, r.body, max_payload=nc.max_payload):
                outcomes[i] = Unpublishable(reason)
            else:
                sendable.append(i)
        messages = [Message(rows[i].type, rows[i].body, str(rows[i].event_id)) for i in sendable]
        try:
            answers = await self.bus.js.publish_batch(
                messages, stream=EVENTS_STREAM, timeout=self.publish_timeout
            )
        except Exception as exc:  # not connected, or the connection failed: judged with the rest
            answers = [exc] * len(messages)
        for i, answer in zip(sendable, answers, strict=True):
            outcomes[i] = answer
        return outcomes

    async def _stream_works(self, outcomes: list[object]) -> bool:
        """Whether JetStream shows it is taking messages, when some failure depends on it."""
        if not needs_evidence(outcomes) or stream_answered(outcomes):
            return True
        try:
            await asyncio.wait_for(self.bus.js.stream_info(EVENTS_STREAM), PROBE_TIMEOUT)
        except Exception:
            return False
        return True

    async def _record(self, session: Any, faults: list[tuple[Any, str]]) -> None:
        """Count each faulty row's attempt and keep its error; quarantine it at `max_attempts`."""
        errors = {r.seq: error for r, error in faults}
        result = await session.execute(
            self._record_faults,
            {
                "seqs": list(errors),
                "errors": list(errors.values()),
                "max_attempts": self.max_attempts,
            },
        )
        for row in result:
            fields = {
                "schema": self.schema,
                "seq": row.seq,
                "event_id": str(row.event_id),
                "subject": row.type,
                "attempts": row.attempts,
                "error": errors[row.seq],
            }
            if row.quarantined:
                log.error("outbox row quarantined", **fields)
            else:
                log.warning("outbox row failed", **fields)

    async def measure_lag(self) -> tuple[int, float]:
        """Pending rows and the oldest one's age (quarantined rows apart); sets the gauges."""
        async with self.db.session() as session:
            count, age, quarantined = (await session.execute(self._lag)).one()
        self.pending.labels(self.schema).set(count)
        self.oldest.labels(self.schema).set(float(age))
        self.quarantined.labels(self.schema).set(quarantined)
        return int(count), float(age)

    async def prune(self) -> None:
        async with self.db.session() as session:
            await session.execute(self._prune, {"secs": self.retention_seconds})

    # -- the loop -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop, then publish what is committed: the frame calls this after in-flight
        requests have finished, and their events should not wait for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
            await self._last_pass()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    async def _last_pass(self) -> None:
        """Drain the outbox once, within the publish timeout; what is left waits for the next start."""
        try:
            async with asyncio.timeout(self.publish_timeout):
                while (batch := await self.relay_batch()).claimed >= self.batch_size and batch.sent:
                    pass
        except Exception as exc:  # NATS or the database is away, or time is up: nothing is lost
            log.warning(
                "outbox relay stopped before publishing everything",
                schema=self.schema,
                error=repr(exc),
            )

    async def run(self) -> None:
        failures = 0
        last_measure = last_prune = 0.0
        while not self._stopping:
            try:
                await self._ensure_listener()
                self._wake.clear()
                batch = await self.relay_batch()
                now = time.monotonic()
                if now - last_measure >= 1.0:
                    await self.measure_lag()
                    last_measure = now
                if now - last_prune >= 60.0:
                    await self.prune()
                    last_prune = now
                if batch.failed:  # a row's fault or an outage: retry, but not at once
                    failures += 1
                    await self._back_off(
                        failures, f"{batch.faults} rows at fault, {batch.outages} in an outage"
                    )
                    continue
                failures = 0
                if batch.claimed >= self.batch_size:
                    continue  # more are waiting
                await self._sleep(self.poll_interval)
            except Exception as exc:  # NATS or database down: back off and try again
                failures += 1
                await self._back_off(failures, repr(exc))

    async def _back_off(self, failures: int, error: str) -> None:
        self.failures.labels(self.schema).inc()
        delay = backoff(failures)
        log.warning(
            "outbox relay batch failed", schema=self.schema, error=error, retry_in=round(delay, 2)
        )
        await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await self.db.connect_raw()
            await self._listener.add_listener(channel_for(self.schema), lambda *_: self._wake.set())
        except Exception as exc:
            self._listener = None
            log.info("outbox relay polls without LISTEN", error=repr(exc))
