"""The Temporal SDK's metrics reach the process's Prometheus registry as Prometheus expects."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
)

from saas.common.temporal import TemporalMetrics

QUEUE = {"namespace": "default", "task_queue": "tenancy"}


def scraped(registry: CollectorRegistry) -> dict[str, list]:
    text = generate_latest(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_counters_add_gauges_replace_and_each_label_set_is_its_own_series():
    registry = CollectorRegistry()
    bridge = TemporalMetrics(registry)
    for delta in (1, 2, 3):
        bridge.record("temporal_request", BUFFERED_METRIC_KIND_COUNTER, "", "", QUEUE, delta)
    bridge.record(
        "temporal_request", BUFFERED_METRIC_KIND_COUNTER, "", "", {**QUEUE, "operation": "x"}, 5
    )
    for value in (4, 9, 2):
        bridge.record("temporal_num_pollers", BUFFERED_METRIC_KIND_GAUGE, "", "", QUEUE, value)

    families = scraped(registry)
    requests = {tuple(sorted(s.labels.items())): s.value for s in families["temporal_request"]}
    assert requests == {
        tuple(sorted(QUEUE.items())): 6.0,
        tuple(sorted({**QUEUE, "operation": "x"}.items())): 5.0,
    }
    assert [s.value for s in families["temporal_num_pollers"]] == [2.0]


def test_a_counter_named_total_is_exposed_with_one_total():
    registry = CollectorRegistry()
    TemporalMetrics(registry).record(
        "temporal_local_activity_total", BUFFERED_METRIC_KIND_COUNTER, "", "", QUEUE, 1
    )
    text = generate_latest(registry).decode()
    assert "temporal_local_activity_total{" in text and "_total_total" not in text


def test_durations_become_a_cumulative_histogram_in_seconds():
    registry = CollectorRegistry()
    bridge = TemporalMetrics(registry)
    for seconds in (0.004, 0.03, 0.03, 2.0):
        bridge.record(
            "temporal_workflow_endtoend_latency",
            BUFFERED_METRIC_KIND_HISTOGRAM,
            "",
            "duration",
            QUEUE,
            seconds,
        )
    samples = scraped(registry)["temporal_workflow_endtoend_latency"]
    buckets = {s.labels["le"]: s.value for s in samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 1 and buckets["0.05"] == 3 and buckets["2.5"] == 4
    assert buckets["+Inf"] == 4
    total = next(s.value for s in samples if s.name.endswith("_sum"))
    assert abs(total - 2.064) < 1e-9


def test_nothing_is_drained_before_the_runtime_exists():
    bridge = TemporalMetrics(CollectorRegistry())
    bridge.drain()  # no runtime yet: no error, nothing recorded
    assert list(bridge.collect()) == []
