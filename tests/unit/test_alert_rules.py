"""The alert rules can fire: their joins match series, and their metrics are ones the code exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import exported_metrics
from tests.support.promql import alert_expressions, mismatched_joins

ROOT = Path(__file__).resolve().parents[2]
RULES = alert_expressions(ROOT / "infra" / "prometheus" / "alerts.yml")


def test_the_rules_file_is_read_whole():
    text = (ROOT / "infra" / "prometheus" / "alerts.yml").read_text()
    assert len(RULES) == text.count("- alert:") > 0
    assert all(RULES.values())


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_join_of_two_vectors_matches_on_the_same_labels(name):
    assert mismatched_joins(RULES[name]) == []


@pytest.mark.parametrize(
    ("expr", "mismatched"),
    [
        # What ConsumerFallingBehind said: the right side keeps every label, so nothing matches.
        (
            "max by (service, consumer) (saas_consumer_pending) > 10000"
            " and deriv(saas_consumer_pending[10m]) > 0",
            True,
        ),
        ("sum by (a) (x) / sum by (a, b) (y)", True),
        ("sum by (a) (x) > 1 and sum(y) > 0", True),
        ("max by (a) (x) > 1 and on (a) deriv(y[5m]) > 0", False),
        ("max by (a) (x) > 1 and on (b) max by (a) (y) > 0", True),
        ("max by (a, b) (x) > 1 unless ignoring (b) max by (a) (y) > 0", False),
        ("sum by (a) (rate(x[5m])) / clamp_min(sum by (a) (rate(y[5m])), 1) > 0.05", False),
        ("sum(rate(x[5m])) / sum(rate(y[5m])) > 0.05 or max(z) > 1", False),
        ("(max(x) by (a, b)) > 1 and (max by (b, a) (deriv(y[10m]))) > 0", False),
        ('rate(x{status=~"5.."}[5m]) > 0', False),
        ("up == 0", False),
    ],
)
def test_the_join_check_tells_matching_from_mismatched_sides(expr, mismatched):
    assert bool(mismatched_joins(expr)) is mismatched


# -- metric names ------------------------------------------------------------------------------
METRIC = re.compile(r"\b(?:saas|process|python)_[a-z0-9_]+")


def used_metrics(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_the_registries_are_read():
    exported = exported_metrics.every()
    assert {
        "saas_consumer_pending",
        "saas_consumer_events_total",
        "saas_api_request_duration_seconds_count",
        "saas_database_connection_pool_usage",
    } <= exported


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_metric_a_rule_uses_is_one_a_process_exports(name):
    assert used_metrics(RULES[name]) - exported_metrics.every() == set()


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_metric_asked_of_one_process_is_one_that_process_exports(name):
    assert exported_metrics.asked_of_the_wrong_process(RULES[name]) == []


def test_consumers_pausing_and_lag_going_unmeasured_are_alerted_on():
    used = {m for expr in RULES.values() for m in used_metrics(expr)}
    assert {"saas_consumer_paused", "saas_consumer_lag_errors_total"} <= used


def test_the_production_guides_thresholds_are_alerted_on():
    """Provisioning over 5 minutes or failed, API p99 over 2 s, rate-limit rejections spiking,
    a pool over 80%, any audit write failure, outbox and consumer lag."""
    assert "> 0" in RULES["TenantProvisioningFailed"]
    assert 'le="300.0"' in RULES["TenantProvisioningSlow"]
    assert "histogram_quantile(0.99" in RULES["ApiLatencyHigh"] and "> 2" in RULES["ApiLatencyHigh"]
    assert "saas_rate_limit_rejections_total" in RULES["RateLimitRejectionsSpike"]
    assert "> 0.8" in RULES["DatabasePoolNearlyFull"]
    assert "saas_audit_log_failures_total" in RULES["AuditWriteFailed"]
    assert "saas_outbox_oldest_unsent_age_seconds" in RULES["OutboxNotDraining"]
    assert "saas_consumer_pending" in RULES["ConsumerFallingBehind"]


def test_promtool_accepts_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Prometheus) has no wheel on the package registry; put it on PATH")
    result = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "infra" / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
