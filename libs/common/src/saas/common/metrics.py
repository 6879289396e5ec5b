"""Prometheus metrics: one registry per process and the helpers services declare theirs with."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """A process's metric registry. Services declare their own metrics through it.

    Declaring a metric that exists already returns it (with the same kind and labels), so two
    instances of one component (two event consumers, say) share their metrics, told apart by
    labels."""

    def __init__(self, namespace: str = "saas") -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry(auto_describe=True)
        self._declared: dict[str, tuple[type, tuple[str, ...], Any]] = {}
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def _once(self, kind: type, name: str, labels: tuple[str, ...], make: Any) -> Any:
        known = self._declared.get(name)
        if known is not None:
            if known[:2] != (kind, tuple(labels)):
                raise ValueError(f"metric {name} declared again with another kind or labels")
            return known[2]
        metric = make()
        self._declared[name] = (kind, tuple(labels), metric)
        return metric

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._once(
            Counter,
            name,
            labels,
            lambda: Counter(name, doc, labels, namespace=self.namespace, registry=self.registry),
        )

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self._once(
            Gauge,
            name,
            labels,
            lambda: Gauge(name, doc, labels, namespace=self.namespace, registry=self.registry),
        )

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        return self._once(
            Histogram,
            name,
            labels,
            lambda: Histogram(
                name, doc, labels, namespace=self.namespace, registry=self.registry, buckets=buckets
            ),
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
