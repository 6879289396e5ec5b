"""Attaching the event machinery to a process: the one place that decides when it starts and stops."""

from __future__ import annotations

from collections.abc import Sequence

from saas.common.events.consumer import BatchHandler, ConsumerOptions, EventConsumer
from saas.common.events.relay import OutboxRelay
from saas.common.events.stream import ensure_streams
from saas.common.process import ServiceProcess


def attach_outbox_relay(process: ServiceProcess, schema: str) -> None:
    """Run the relay for `schema`'s outbox in this process; it stops after in-flight work is done,
    so events written by the last requests are still published."""
    relay: dict[str, OutboxRelay] = {}

    @process.on_startup
    async def start_relay(p: ServiceProcess) -> None:
        assert p.db is not None and p.bus is not None
        await ensure_streams(p.bus.js, p.settings)
        relay["r"] = OutboxRelay(
            p.db,
            p.bus,
            schema,
            metrics=p.metrics,
            batch_size=p.settings.outbox_batch_size,
            poll_interval=p.settings.outbox_poll_interval,
        )
        relay["r"].start()

    @process.on_shutdown
    async def stop_relay(_: ServiceProcess) -> None:
        if "r" in relay:
            await relay["r"].stop()


def attach_consumer(
    process: ServiceProcess,
    *,
    schema: str,
    durable: str,
    handler: BatchHandler,
    subjects: Sequence[str] | None = None,
    options: ConsumerOptions | None = None,
) -> None:
    """Consume events in this process; it stops fetching at SIGTERM and finishes the batch in hand."""
    consumer: dict[str, EventConsumer] = {}

    @process.on_startup
    async def start_consumer(p: ServiceProcess) -> None:
        assert p.db is not None and p.bus is not None
        await ensure_streams(p.bus.js, p.settings)
        s = p.settings
        consumer["c"] = EventConsumer(
            bus=p.bus,
            db=p.db,
            schema=schema,
            durable=durable,
            handler=handler,
            subjects=subjects,
            options=options
            or ConsumerOptions(
                batch_size=s.consumer_batch_size,
                max_deliveries=s.consumer_max_deliveries,
                ack_wait=s.consumer_ack_wait,
                processed_retention=s.events_max_age,
            ),
            metrics=p.metrics,
        )
        await consumer["c"].subscribe()
        consumer["c"].start()

    @process.on_drain
    async def stop_consumer(_: ServiceProcess) -> None:
        if "c" in consumer:
            await consumer["c"].stop()
