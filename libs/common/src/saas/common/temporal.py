"""Temporal: the process's client connection, the SDK's own metrics, and the worker as a
component.

Imported only by processes whose settings include `TemporalSettings`, so the others never load
the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from temporalio.client import Client
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)
from temporalio.worker import Worker

from saas.common.components import Component
from saas.common.logging import get_logger
from saas.common.metrics import LATENCY_BUCKETS

log = get_logger(__name__)

SIZE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 10000.0)
_NOT_IN_A_NAME = re.compile(r"[^a-zA-Z0-9_:]")
Labels = tuple[tuple[str, str], ...]


class TemporalMetrics:
    """The Temporal SDK's own metrics (polls, task slots, schedule-to-start and execution
    latencies, requests to the server, ...) in the process's Prometheus registry, so they are
    on its `/metrics` with everything else rather than on a second port.

    The SDK's core records into a `MetricBuffer`; `drain` moves what it holds into counters,
    gauges and histograms kept here (the Temporal connection drains every second, and each
    scrape drains first). Names keep the SDK's `temporal_` prefix; durations are in seconds."""

    def __init__(self, registry: CollectorRegistry, *, buffer_size: int = 100_000) -> None:
        self.buffer = MetricBuffer(buffer_size, MetricBufferDurationFormat.SECONDS)
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[int, str, bool]] = {}  # name -> kind, help, is a duration
        self._values: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, list[float]]] = {}  # buckets..., sum, count
        self._runtime: Runtime | None = None
        registry.register(self)

    @property
    def runtime(self) -> Runtime:
        """The SDK runtime whose metrics go into the buffer (one per process)."""
        if self._runtime is None:
            self._runtime = Runtime(telemetry=TelemetryConfig(metrics=self.buffer))
        return self._runtime

    def drain(self) -> None:
        if self._runtime is None:
            return
        with self._lock:
            for update in self.buffer.retrieve_updates():
                self.record(
                    update.metric.name,
                    update.metric.kind,
                    update.metric.description or "",
                    update.metric.unit or "",
                    update.attributes,
                    update.value,
                )

    def record(
        self,
        name: str,
        kind: int,
        description: str,
        unit: str,
        attributes: Mapping[str, Any],
        value: float,
    ) -> None:
        """One update: a counter's delta, a gauge's value, or one observation of a histogram."""
        name = _NOT_IN_A_NAME.sub("_", name)
        if kind == BUFFERED_METRIC_KIND_COUNTER:
            name = name.removesuffix("_total")  # exposed with one `_total`, not two
        duration = unit in ("duration", "s", "seconds", "ms")
        self._kinds.setdefault(name, (kind, description or name, duration))
        labels = tuple(sorted((_NOT_IN_A_NAME.sub("_", k), str(v)) for k, v in attributes.items()))
        if kind == BUFFERED_METRIC_KIND_COUNTER:
            series = self._values.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + value
        elif kind == BUFFERED_METRIC_KIND_GAUGE:
            self._values.setdefault(name, {})[labels] = float(value)
        else:
            bounds = LATENCY_BUCKETS if duration else SIZE_BUCKETS
            counts = self._histograms.setdefault(name, {}).setdefault(
                labels, [0.0] * (len(bounds) + 2)
            )
            for i, bound in enumerate(bounds):
                if value <= bound:
                    counts[i] += 1
            counts[-2] += value
            counts[-1] += 1

    def collect(self) -> Iterator[Metric]:
        with contextlib.suppress(Exception):  # a scrape must never fail for the SDK's sake
            self.drain()
        with self._lock:
            for name, (kind, description, duration) in sorted(self._kinds.items()):
                if kind == BUFFERED_METRIC_KIND_COUNTER:
                    metric = Metric(name, description, "counter")
                    for labels, total in self._values.get(name, {}).items():
                        metric.add_sample(f"{name}_total", dict(labels), total)
                elif kind == BUFFERED_METRIC_KIND_GAUGE:
                    metric = Metric(name, description, "gauge")
                    for labels, current in self._values.get(name, {}).items():
                        metric.add_sample(name, dict(labels), current)
                else:
                    metric = Metric(name, description, "histogram")
                    bounds = LATENCY_BUCKETS if duration else SIZE_BUCKETS
                    for labels, counts in self._histograms.get(name, {}).items():
                        for bound, count in zip(bounds, counts, strict=False):
                            metric.add_sample(
                                f"{name}_bucket", {**dict(labels), "le": repr(bound)}, count
                            )
                        metric.add_sample(
                            f"{name}_bucket", {**dict(labels), "le": "+Inf"}, counts[-1]
                        )
                        metric.add_sample(f"{name}_sum", dict(labels), counts[-2])
                        metric.add_sample(f"{name}_count", dict(labels), counts[-1])
                yield metric

    def describe(self) -> list[Metric]:
        return []  # metrics appear as the SDK reports them; nothing to check at registration


class Temporal:
    """The connection to the Temporal frontend (readiness key `temporal`); with `metrics`, the
    SDK's own metrics go into that registry."""

    name = "temporal"

    def __init__(
        self, host: str, namespace: str, *, metrics_registry: CollectorRegistry | None = None
    ) -> None:
        self.host = host
        self.namespace = namespace
        self._client: Client | None = None
        self.metrics = TemporalMetrics(metrics_registry) if metrics_registry else None
        self._draining: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        if self._client is None:
            runtime = self.metrics.runtime if self.metrics else None
            self._client = await Client.connect(
                self.host, namespace=self.namespace, runtime=runtime
            )
            if self.metrics is not None:
                self._draining = asyncio.create_task(self._drain_often(), name="temporal-metrics")

    async def _drain_often(self) -> None:
        assert self.metrics is not None
        while True:  # the buffer drops updates when full: keep it empty between scrapes
            await asyncio.sleep(1.0)
            try:
                self.metrics.drain()
            except Exception as exc:
                log.warning("could not read the Temporal SDK's metrics", error=repr(exc))

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectionError("temporal is not connected yet")
        return self._client

    async def check(self) -> None:
        if not await self.client.service_client.check_health():
            raise ConnectionError("temporal reports unhealthy")

    async def close(self) -> None:
        """The SDK's client holds no resources that need closing; the metrics drain stops."""
        if self._draining is not None:
            self._draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._draining


class TemporalWorker(Component):
    """Runs workflows and activities on a task queue; at drain it stops polling and lets running
    activities finish within `graceful_timeout`."""

    def __init__(
        self,
        temporal: Temporal,
        *,
        task_queue: str,
        workflows: Sequence[type],
        activities: Sequence[Callable[..., Any]],
        graceful_timeout: float,
        **worker_options: Any,
    ) -> None:
        self.name = f"temporal-worker:{task_queue}"
        self.temporal = temporal
        self.task_queue = task_queue
        self.workflows = list(workflows)
        self.activities = list(activities)
        self.graceful_timeout = graceful_timeout
        self.worker_options = worker_options
        self._worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker = Worker(
            self.temporal.client,
            task_queue=self.task_queue,
            workflows=self.workflows,
            activities=self.activities,
            graceful_shutdown_timeout=timedelta(seconds=self.graceful_timeout),
            **self.worker_options,
        )
        self._task = asyncio.create_task(self._worker.run(), name=self.name)

    async def drain(self) -> None:
        if self._worker is not None and self._task is not None and not self._task.done():
            await self._worker.shutdown()  # waits for running activities up to the graceful timeout
        if self._task is not None:
            try:
                await self._task
            except Exception as exc:  # the worker already failed; nothing left to stop
                log.warning("temporal worker ended with an error", error=repr(exc))
