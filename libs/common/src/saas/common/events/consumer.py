"""The idempotent consumer every service uses to apply events.

- A durable JetStream pull consumer with explicit acks.
- A batch is applied in one transaction; the event ids are recorded in the service's
  `processed_events` table in that same transaction, so a redelivery changes nothing. Messages
  are acknowledged only after the commit: a consumer that crashes mid-batch loses nothing.
- A batch that fails is retried one message at a time, so one bad message cannot hold back the
  rest. A failing message is redelivered with backoff; after `max_deliveries` real failures it
  goes to the dead-letter stream with the reason in headers, as does anything that fails
  validation (unknown type, bad payload, oversized) at once.
- Real failures are counted per event in the service's `consumer_failures` table, in a short
  transaction of their own: the count survives restarts and is shared by replicas, and
  redeliveries caused by an outage (see `faults`) never add to it.
- When distinct events keep failing the same way (a revoked grant, a migration that did not
  run), the fault is the system's: the consumer pauses with backoff, counting and dead-lettering
  nothing, until an event is applied again (`consumer_paused{reason}` says why meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from saas.common.bus import Bus
from saas.common.bus.jetstream import acknowledge, deliveries
from saas.common.components import Component
from saas.common.db import Database
from saas.common.events.envelope import EventEnvelope, InvalidEvent, NewerVersion, parse_event
from saas.common.events.faults import FailureStreak, Fault, fault_of, is_outage
from saas.common.events.pull import Arrival, BatchPuller, ConsumerGone
from saas.common.events.stream import DEADLETTER_PREFIX, EVENTS_STREAM
from saas.common.lifecycle import backoff
from saas.common.logging import get_logger, log_context
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings
from saas.common.tenant_names import quote_schema

if TYPE_CHECKING:
    from saas.common.process import ServiceProcess

log = get_logger(__name__)

BatchHandler = Callable[[AsyncSession, list[EventEnvelope]], Awaitable[None]]
# A handler whose own table holds each event it applied once, by id (the audit log): it skips
# what it applied before, under a lock that serialises whoever applies the same event, and
# returns what it applied. Its consumer keeps no second record in `processed_events`.
RecordingHandler = Callable[[AsyncSession, list[EventEnvelope]], Awaitable[list[EventEnvelope]]]

HEADER_DL_REASON = "Saas-Dead-Letter-Reason"
HEADER_DL_DETAIL = "Saas-Dead-Letter-Detail"
HEADER_DL_CONSUMER = "Saas-Dead-Letter-Consumer"
HEADER_DL_SUBJECT = "Saas-Original-Subject"
HEADER_DL_SEQUENCE = "Saas-Original-Sequence"
HEADER_DL_DELIVERIES = "Saas-Deliveries"
HEADER_DL_FAILURES = "Saas-Failures"


@dataclass(frozen=True)
class ConsumerOptions:
    batch_size: int = 200
    max_deliveries: int = 5
    backoff: tuple[float, ...] = (1.0, 5.0, 30.0)
    ack_wait: float = 30.0
    fetch_timeout: float = 1.0
    pause_max: float = 5.0  # longest pause while NATS or the database is away
    # This many distinct events in a row failing the same way make a systemic fault...
    systemic_after: int = 3
    systemic_pause_max: float = 60.0  # ...and the consumer pauses up to this long between tries
    # An event newer than this code is handed back for this long: an upgraded replica takes it.
    defer_delay: float = 60.0
    # Processed ids are kept as long as the stream keeps events: past that nothing can come again.
    processed_retention: float = 30 * 86400.0


class EventConsumer(Component):
    """A durable consumer as a component: at drain it stops fetching and finishes, commits and
    acknowledges the batch in hand."""

    @classmethod
    def for_process(
        cls,
        process: ServiceProcess,
        *,
        schema: str,
        durable: str,
        handler: BatchHandler | RecordingHandler,
        subjects: Sequence[str] | None = None,
        handler_records_ids: bool = False,
    ) -> EventConsumer:
        """A consumer recording processed ids in `schema` (or, with `handler_records_ids`, in the
        handler's own table), configured from `EventSettings`."""
        s = process.settings
        if not isinstance(s, EventSettings):
            raise TypeError(f"{process.name}'s settings do not include EventSettings")
        return cls(
            bus=process.bus,
            db=process.db,
            schema=schema,
            durable=durable,
            handler=handler,
            subjects=subjects,
            handler_records_ids=handler_records_ids,
            options=ConsumerOptions(
                batch_size=s.consumer_batch_size,
                max_deliveries=s.consumer_max_deliveries,
                ack_wait=s.consumer_ack_wait,
                processed_retention=s.events_max_age,
            ),
            metrics=process.metrics,
        )

    def __init__(
        self,
        *,
        bus: Bus,
        db: Database,
        schema: str,
        durable: str,
        handler: BatchHandler | RecordingHandler,
        subjects: Sequence[str] | None = None,
        options: ConsumerOptions | None = None,
        metrics: Metrics | None = None,
        handler_records_ids: bool = False,
    ) -> None:
        self.name = f"consumer:{durable}"
        self.bus = bus
        self.db = db
        self.durable = durable
        self.handler = handler
        self.handler_records_ids = handler_records_ids
        self.subjects = list(subjects) if subjects else None
        self.options = options or ConsumerOptions()
        s = quote_schema(schema)
        # Recording events as processed also forgets their failures, in the same statement.
        self._record = text(
            f"WITH forgotten AS (DELETE FROM {s}.consumer_failures "  # noqa: S608 - service's own schema
            "WHERE consumer = :consumer AND event_id = ANY(CAST(:ids AS uuid[]))) "
            f"INSERT INTO {s}.processed_events (consumer, event_id) "
            "SELECT :consumer, unnest(CAST(:ids AS uuid[])) ON CONFLICT DO NOTHING RETURNING event_id"
        )
        self._count_failure = text(
            f"INSERT INTO {s}.consumer_failures AS f (consumer, event_id, failures, last_error) "  # noqa: S608 - service's own schema
            "VALUES (:consumer, :event_id, 1, :error) ON CONFLICT (consumer, event_id) DO UPDATE "
            "SET failures = f.failures + 1, last_error = EXCLUDED.last_error, updated_at = now() "
            "RETURNING failures"
        )
        self._forgive_failures = text(
            f"UPDATE {s}.consumer_failures SET failures = failures - 1 "  # noqa: S608 - service's own schema
            "WHERE consumer = :consumer AND event_id = ANY(CAST(:ids AS uuid[])) AND failures > 0"
        )
        self._forget_failures = text(
            f"DELETE FROM {s}.consumer_failures "  # noqa: S608 - service's own schema
            "WHERE consumer = :consumer AND event_id = ANY(CAST(:ids AS uuid[]))"
        )
        self._prune = [
            text(
                f"DELETE FROM {s}.{table} "  # noqa: S608 - service's own schema
                f"WHERE consumer = :consumer AND {column} < now() - make_interval(secs => :secs)"
            )
            for table, column in (
                ("processed_events", "processed_at"),
                ("consumer_failures", "updated_at"),  # left behind by a crash, say
            )
        ]
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._streak = FailureStreak(self.options.systemic_after)
        self._pauses = 0  # tries in a row that found the systemic fault still there
        self._paused_since = 0.0
        self._shown_pause: str | None = None
        self._puller: BatchPuller | None = None
        m = metrics or Metrics()
        self.events = m.counter(
            "consumer_events_total", "Events handled by outcome", ("consumer", "outcome")
        )
        self.failures = m.counter(
            "consumer_handler_failures_total", "Handler failures", ("consumer",)
        )
        self.batch_seconds = m.histogram(
            "consumer_batch_seconds", "Time to apply one batch", ("consumer",)
        )
        self.lag = m.gauge(
            "consumer_pending", "Events in the stream not yet acknowledged", ("consumer",)
        )
        self.stalled = m.gauge(
            "consumer_stalled_seconds",
            "How long events have been pending without the acknowledged floor moving",
            ("consumer",),
        )
        self.lag_errors = m.counter(
            "consumer_lag_errors_total",
            "Failures to measure consumer_pending, which is stale meanwhile",
            ("consumer",),
        )
        self.paused = m.gauge(
            "consumer_paused",
            "1 while paused: by an outage, or by the fault (SQLSTATE or exception) every event hits",
            ("consumer", "reason"),
        )

    # -- set-up ---------------------------------------------------------------------------------
    async def subscribe(self) -> None:
        await self.declare()
        self._puller = BatchPuller(self.bus.nc, EVENTS_STREAM, self.durable, prepare=_parsed)
        await self._puller.start()

    async def declare(self) -> None:
        """Create the durable, or update it in place. A durable declared again after it was
        deleted starts from the stream's first event: the processed ids drop what was applied."""
        o = self.options
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=o.ack_wait,
            # Unlimited on the server: this code decides when to give up, and never for an outage.
            max_deliver=-1,
            max_ack_pending=o.batch_size * 10,
            filter_subjects=self.subjects,
        )
        await self.bus.js.add_consumer(EVENTS_STREAM, config)

    # -- the loop -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.subscribe()
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name=self.name)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The fetch-and-apply loop, while it runs."""
        return self._task

    async def drain(self) -> None:
        """Finish the batch in hand, acknowledge it, and stop fetching."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._puller is not None:
            await self._puller.stop()

    async def run(self) -> None:
        if self._puller is None:
            await self.subscribe()
        assert self._puller is not None
        outages = 0
        last_lag = last_prune = 0.0
        while not self._stop.is_set():
            try:
                msgs = await self._fetch(self._puller)
            except Exception as exc:  # NATS down or reconnecting
                outages += 1
                self._show_pause("outage")
                log.warning("consumer fetch failed", consumer=self.durable, error=repr(exc))
                await self._rest(backoff(outages, first=0.2, cap=self.options.pause_max))
                continue
            if msgs:
                try:
                    await self.process(msgs)
                except Exception as exc:  # an outage mid-batch: what was not acked comes back
                    outages += 1
                    self._show_pause("outage")
                    log.warning(
                        "consumer batch interrupted", consumer=self.durable, error=repr(exc)
                    )
                    await self._rest(backoff(outages, first=0.2, cap=self.options.pause_max))
                    continue
            outages = 0
            paused_by = self._streak.paused_by
            self._show_pause(paused_by.reason if paused_by else None)
            if paused_by is not None:
                await self._rest(self._pause_delay())
                self._pauses += 1
            else:
                self._pauses = 0
            if time.monotonic() - last_lag > 2.0:
                await self.measure_lag()
                last_lag = time.monotonic()
            if time.monotonic() - last_prune > 600.0:
                await self.prune_processed()
                last_prune = time.monotonic()

    async def _fetch(self, puller: BatchPuller) -> list[Arrival]:
        try:
            return await puller.fetch(self.options.batch_size, self.options.fetch_timeout)
        except ConsumerGone:
            log.warning("durable consumer is gone; declaring it again", consumer=self.durable)
            await self.declare()
            return []

    async def _rest(self, seconds: float) -> None:
        """Sleep, unless `drain` asks the loop to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _pause_delay(self) -> float:
        """How long a systemic pause lasts: doubling with every try that fails the same way."""
        o = self.options
        return backoff(self._pauses + 1, first=o.backoff[0], cap=o.systemic_pause_max)

    def _show_pause(self, reason: str | None) -> None:
        if reason == self._shown_pause:
            return
        if self._shown_pause is not None:
            self.paused.labels(self.durable, self._shown_pause).set(0)
        if reason is not None:
            self.paused.labels(self.durable, reason).set(1)
        self._shown_pause = reason

    async def prune_processed(self) -> None:
        try:
            async with self.db.session() as session:
                for prune in self._prune:
                    await session.execute(
                        prune, {"consumer": self.durable, "secs": self.options.processed_retention}
                    )
        except Exception as exc:  # housekeeping must never stop the consumer
            log.warning("pruning processed events failed", consumer=self.durable, error=repr(exc))

    async def measure_lag(self) -> None:
        """Set `consumer_pending`; a failure is counted, so that a stale gauge shows. Metrics
        never stop the consumer, but a durable found missing here is declared again."""
        try:
            info = await self.bus.js.consumer_info(EVENTS_STREAM, self.durable)
        except Exception as exc:
            self.lag_errors.labels(self.durable).inc()
            log.warning("measuring consumer lag failed", consumer=self.durable, error=repr(exc))
            if isinstance(exc, NotFoundError):
                with contextlib.suppress(Exception):  # the fetch loop notices it too
                    await self.declare()
            return
        pending = info.num_pending + info.num_ack_pending
        self.lag.labels(self.durable).set(pending)
        # How long the oldest unacknowledged event has kept the ack floor still: events the
        # stream's age limit would drop unread are flagged long before they are.
        last = (info.ack_floor.last_active if info.ack_floor else None) or info.created
        stalled = (datetime.now(UTC) - last).total_seconds() if pending and last else 0.0
        self.stalled.labels(self.durable).set(max(0.0, stalled))

    # -- one batch ----------------------------------------------------------------------------
    async def process(self, arrivals: list[Arrival]) -> None:
        """Apply a batch of messages, each with what `_parsed` made of it."""
        started = time.perf_counter()
        valid: list[tuple[Msg, EventEnvelope]] = []
        for msg, parsed in arrivals:
            if isinstance(parsed, EventEnvelope):
                valid.append((msg, parsed))
            elif isinstance(parsed, NewerVersion):
                await self.defer(msg, parsed)
            elif isinstance(parsed, InvalidEvent):
                await self.dead_letter(msg, parsed.reason, str(parsed))
            else:  # a bug, not the event's fault: nothing of the batch is acknowledged
                raise parsed
        if valid:
            try:
                await self._apply(valid)
            except Exception as exc:
                if is_outage(exc):
                    await self._put_back(valid, exc)
                    raise
                await self._apply_each(valid, exc)
        self.batch_seconds.labels(self.durable).observe(time.perf_counter() - started)

    async def _put_back(self, items: list[tuple[Msg, EventEnvelope]], exc: BaseException) -> None:
        """The database or NATS is away, not the events' fault: hand them back for later,
        without counting towards dead-lettering."""
        log.warning(
            "consumer paused by an outage", consumer=self.durable, error=repr(exc), size=len(items)
        )
        for msg, _ in items:
            if msg.is_acked:  # settled before the outage struck
                continue
            try:
                await msg.nak(delay=self.options.backoff[0])
            except Exception:  # NATS itself is away: the server redelivers after ack_wait anyway
                break

    async def _apply(self, items: list[tuple[Msg, EventEnvelope]]) -> None:
        async with self.db.session() as session:
            if self.handler_records_ids:
                fresh = await self._apply_recorded_by_handler(session, items)
            else:
                fresh = await self._record_and_apply(session, items)
        # Committed: only now may the server forget these messages.
        await acknowledge(self.bus.nc, [msg for msg, _ in items])
        if fresh and (resumed := self._streak.succeeded()) is not None:
            log.info(
                "consumer resumed: events apply again",
                consumer=self.durable,
                reason=resumed.reason,
                paused_seconds=round(time.monotonic() - self._paused_since, 1),
            )
        self.events.labels(self.durable, "applied").inc(len(fresh))
        if len(items) > len(fresh):
            self.events.labels(self.durable, "duplicate").inc(len(items) - len(fresh))

    async def _record_and_apply(
        self, session: AsyncSession, items: list[tuple[Msg, EventEnvelope]]
    ) -> list[EventEnvelope]:
        """Record the batch's ids as processed (forgetting their failures in the same statement)
        and hand the handler those that were new."""
        inserted = await session.execute(
            # Canonical ids (the envelope makes them so): the database reads them as uuids.
            self._record,
            {"consumer": self.durable, "ids": [e.id for _, e in items]},
        )
        fresh_ids = {str(row[0]) for row in inserted}
        fresh: list[EventEnvelope] = []
        for _, envelope in items:
            if envelope.id in fresh_ids:
                fresh.append(envelope)
                fresh_ids.discard(envelope.id)  # the same id twice in one batch is applied once
        if fresh:
            await self.handler(session, fresh)
        return fresh

    async def _apply_recorded_by_handler(
        self, session: AsyncSession, items: list[tuple[Msg, EventEnvelope]]
    ) -> list[EventEnvelope]:
        """Hand the handler the batch (each id once); it skips what it applied before. Failures
        are forgotten in the same transaction, for the events that can have any: those the
        server delivered before (a failure is counted on a delivery, and the next one follows)."""
        batch: list[EventEnvelope] = []
        seen: set[str] = set()
        for _, envelope in items:
            if envelope.id not in seen:  # the same id twice in one batch is applied once
                seen.add(envelope.id)
                batch.append(envelope)
        fresh = await self.handler(session, batch)
        again = [e.id for m, e in items if deliveries(m) > 1]
        if again:
            await session.execute(
                self._forget_failures,
                {"consumer": self.durable, "ids": [uuid.UUID(i) for i in again]},
            )
        return list(fresh or ())

    async def _apply_each(
        self, items: list[tuple[Msg, EventEnvelope]], batch_error: Exception
    ) -> None:
        """After a batch failed: each event on its own, so one bad event cannot hold back the
        rest (a batch of one has had its try). An outage puts back what is left and raises."""
        if len(items) > 1:
            log.warning(
                "batch failed; retrying one event at a time", consumer=self.durable, size=len(items)
            )
        for i, item in enumerate(items):
            try:
                error = batch_error if len(items) == 1 else await self._try_alone(item)
                if error is not None:
                    await self._failed(item, error)
            except Exception as exc:
                await self._put_back(items[i:], exc)
                raise

    async def _try_alone(self, item: tuple[Msg, EventEnvelope]) -> Exception | None:
        """The handler's failure on this one event, if any; an outage is raised."""
        try:
            await self._apply([item])
        except Exception as exc:
            if is_outage(exc):
                raise
            return exc
        return None

    async def _failed(self, item: tuple[Msg, EventEnvelope], exc: Exception) -> None:
        """The handler failed on this event for real: count it, and give up at `max_deliveries`,
        unless every event fails this way."""
        msg, envelope = item
        self.failures.labels(self.durable).inc()
        fault, paused_by = fault_of(exc), self._streak.paused_by
        if self._streak.failed(envelope.id, fault):
            if self._streak.paused_by is not paused_by:
                await self._pause(fault, exc, [e for e in self._streak.events if e != envelope.id])
            await msg.nak(delay=self._pause_delay())
            self.events.labels(self.durable, "paused").inc()
            return
        failures = await self._count(envelope, exc)
        with log_context(correlation_id=envelope.correlation_id, tenant_id=envelope.tenant_id):
            log.warning(
                "event handler failed",
                consumer=self.durable,
                event_id=envelope.id,
                type=envelope.type,
                failures=failures,
                error=repr(exc),
            )
        if failures >= self.options.max_deliveries:
            # Forgotten first: should the dead-lettering fail, the event is retried, not lost.
            await self._forget([envelope.id])
            await self.dead_letter(msg, "handler_failed", repr(exc), failures=failures)
        else:
            backoff = self.options.backoff
            await msg.nak(delay=backoff[min(failures, len(backoff)) - 1])
            self.events.labels(self.durable, "retried").inc()

    async def _pause(self, fault: Fault, exc: Exception, counted: list[str]) -> None:
        """A systemic fault: said once, and the failures it caused before it was recognised are
        taken back from the events' counts."""
        log.error(
            "consumer paused: events keep failing the same way",
            consumer=self.durable,
            reason=fault.reason,
            error=repr(exc),
            events=len(counted) + 1,
        )
        self._paused_since = time.monotonic()
        async with self.db.session() as session:
            await session.execute(
                self._forgive_failures,
                {"consumer": self.durable, "ids": [uuid.UUID(i) for i in counted]},
            )

    async def _count(self, envelope: EventEnvelope, exc: Exception) -> int:
        """One more real failure of this event, committed at once (the handler's transaction was
        rolled back); returns how many it has had."""
        async with self.db.session() as session:
            result = await session.execute(
                self._count_failure,
                {
                    "consumer": self.durable,
                    "event_id": uuid.UUID(envelope.id),
                    "error": repr(exc)[:2000],
                },
            )
            return int(result.scalar_one())

    async def _forget(self, event_ids: list[str]) -> None:
        async with self.db.session() as session:
            await session.execute(
                self._forget_failures,
                {"consumer": self.durable, "ids": [uuid.UUID(i) for i in event_ids]},
            )

    async def defer(self, msg: Msg, exc: NewerVersion) -> None:
        """Written by newer code during a rolling deploy: not this replica's to apply or to judge.
        Handed back without counting, for a replica that knows the version."""
        await msg.nak(delay=self.options.defer_delay)
        self.events.labels(self.durable, "deferred").inc()
        log.info("event deferred to newer code", consumer=self.durable, detail=str(exc))

    async def dead_letter(
        self, msg: Msg, reason: str, detail: str, *, failures: int | None = None
    ) -> None:
        """Move a message to `deadletter.<consumer>` with why, then stop its redelivery."""
        meta = msg.metadata
        headers = {
            "Nats-Msg-Id": f"{self.durable}:{meta.sequence.stream}",
            HEADER_DL_REASON: reason,
            HEADER_DL_DETAIL: detail[:1000],
            HEADER_DL_CONSUMER: self.durable,
            HEADER_DL_SUBJECT: msg.subject,
            HEADER_DL_SEQUENCE: str(meta.sequence.stream),
            HEADER_DL_DELIVERIES: str(meta.num_delivered),
        }
        if failures is not None:
            headers[HEADER_DL_FAILURES] = str(failures)
        await self.bus.js.publish(f"{DEADLETTER_PREFIX}.{self.durable}", msg.data, headers=headers)
        await msg.term()
        self.events.labels(self.durable, "dead_lettered").inc()
        log.error(
            "event dead-lettered",
            consumer=self.durable,
            reason=reason,
            detail=detail[:300],
            subject=msg.subject,
        )


def _parsed(msg: Msg) -> EventEnvelope | Exception:
    """The event a message carries, or why it cannot be applied. Called as each message arrives
    (`BatchPuller`), so that parsing overlaps the wait for the batch before it to commit."""
    try:
        return parse_event(msg.data)
    except Exception as exc:  # raised again when the batch is processed
        return exc
