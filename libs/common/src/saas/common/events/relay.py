"""The outbox relay: publishes committed outbox rows to JetStream, marks them sent after the ack.

- Wakes on LISTEN/NOTIFY, polls as a fallback.
- Claims rows with `FOR UPDATE SKIP LOCKED`, so several replicas can run. Each claim also takes a
  transaction-level advisory lock per tenant, and skips tenants another replica holds: a tenant's
  events are only ever published by one relay at a time, oldest first, so order per tenant holds.
- Publishes a batch with `Nats-Msg-Id` = event id and waits for every ack before marking; a
  crash between publish and mark republishes, and JetStream drops the duplicate (within its
  duplicate window; beyond it, consumers' processed-event records drop it).
- Backs off while NATS or the database is down; exposes pending count and oldest unsent age.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy import text

from saas.common.bus import Bus
from saas.common.components import Component
from saas.common.db import Database
from saas.common.events.outbox import channel_for
from saas.common.events.stream import EVENTS_STREAM, ensure_streams
from saas.common.lifecycle import backoff
from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.settings import EventSettings
from saas.common.tenant_names import quote_schema

if TYPE_CHECKING:
    from saas.common.process import ServiceProcess

log = get_logger(__name__)


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
            streams=s,
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
        streams: EventSettings | None = None,
    ) -> None:
        self.name = f"outbox-relay:{schema}"
        self.db = db
        self.bus = bus
        self.schema = schema
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publish_timeout = publish_timeout
        self.retention_seconds = retention_seconds
        self.streams = streams  # declare the streams with these settings when starting
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        table = f"{quote_schema(schema)}.outbox"
        self._claim = text(
            f"""
            SELECT seq, event_id, type, body FROM {table}
            WHERE sent_at IS NULL AND pg_try_advisory_xact_lock(hashtext(:lane), hashtext(tenant_key))
            ORDER BY seq
            LIMIT :limit
            FOR UPDATE SKIP LOCKED
            """  # noqa: S608 - a quoted, validated schema
        )
        self._mark = text(f"UPDATE {table} SET sent_at = now() WHERE seq = ANY(:seqs)")  # noqa: S608
        self._lag = text(
            f"SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM {table} "  # noqa: S608
            "WHERE sent_at IS NULL"
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

    # -- one pass -----------------------------------------------------------------------------
    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many events were published."""
        async with self.db.session() as session:
            rows = (
                await session.execute(self._claim, {"lane": self._lane, "limit": self.batch_size})
            ).all()
            if not rows:
                return 0
            await self._publish(rows)
            await session.execute(self._mark, {"seqs": [r.seq for r in rows]})
        self.published.labels(self.schema).inc(len(rows))
        return len(rows)

    async def _publish(self, rows: list[Any]) -> None:
        """Publish the batch in order and wait for every ack, all within `publish_timeout`."""
        js: JetStreamContext = self.bus.js

        async def publish_all() -> None:
            futures = [
                await js.publish_async(
                    r.type, r.body, headers={"Nats-Msg-Id": str(r.event_id)}, stream=EVENTS_STREAM
                )
                for r in rows
            ]
            await asyncio.gather(*futures)

        await asyncio.wait_for(publish_all(), timeout=self.publish_timeout)

    async def measure_lag(self) -> tuple[int, float]:
        async with self.db.session() as session:
            count, age = (await session.execute(self._lag)).one()
        self.pending.labels(self.schema).set(count)
        self.oldest.labels(self.schema).set(float(age))
        return int(count), float(age)

    async def prune(self) -> None:
        async with self.db.session() as session:
            await session.execute(self._prune, {"secs": self.retention_seconds})

    # -- the loop -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.streams is not None:
            await ensure_streams(self.bus.js, self.streams)
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
                while await self.relay_once() >= self.batch_size:
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
                published = await self.relay_once()
                failures = 0
                now = time.monotonic()
                if now - last_measure >= 1.0:
                    await self.measure_lag()
                    last_measure = now
                if now - last_prune >= 60.0:
                    await self.prune()
                    last_prune = now
                if published >= self.batch_size:
                    continue  # more are waiting
                await self._sleep(self.poll_interval)
            except Exception as exc:  # NATS or database down: back off and try again
                failures += 1
                self.failures.labels(self.schema).inc()
                delay = backoff(failures)
                log.warning(
                    "outbox relay batch failed",
                    schema=self.schema,
                    error=repr(exc),
                    retry_in=round(delay, 2),
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
