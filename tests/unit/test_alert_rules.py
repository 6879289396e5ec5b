"""The alert rules can fire: their joins match series, and their metrics are ones the code exposes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
DECLARATION = re.compile(r"\.(counter|gauge|histogram)\(\s*\"([a-z0-9_]+)\"")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def exposed_metrics() -> set[str]:
    """The names the code's `Metrics.counter/gauge/histogram` calls expose (namespace `saas`)."""
    names: set[str] = set()
    sources = [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]
    for source in sources:
        for kind, name in DECLARATION.findall(source.read_text()):
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {f"saas_{base}{suffix}" for suffix in SUFFIXES[kind]}
    return names


def test_the_declarations_are_found():
    exposed = exposed_metrics()
    assert {
        "saas_consumer_pending",
        "saas_consumer_events_total",
        "saas_api_request_duration_seconds_count",
    } <= exposed


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_metric_a_rule_uses_is_one_the_code_exposes(name):
    used = set(re.findall(r"\bsaas_[a-z0-9_]+", RULES[name]))
    assert used - exposed_metrics() == set()


def test_consumers_pausing_and_lag_going_unmeasured_are_alerted_on():
    used = {m for expr in RULES.values() for m in re.findall(r"\bsaas_[a-z0-9_]+", expr)}
    assert {"saas_consumer_paused", "saas_consumer_lag_errors_total"} <= used
