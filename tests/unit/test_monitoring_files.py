"""Prometheus finds every process where it serves /metrics, in compose and in Kubernetes, and the
Grafana dashboard asks only for what the processes export, joined on matching labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support import exported_metrics
from tests.support.deployment import ROOT, ops_port, processes
from tests.support.promql import mismatched_joins

PROMETHEUS = ROOT / "infra" / "prometheus"
DASHBOARD = json.loads((ROOT / "infra" / "grafana" / "saas.json").read_text())
METRIC = re.compile(r"\b(?:saas|process|python)_[a-z0-9_]+")


def targets(panels: list[dict]) -> list[tuple[str, str]]:
    found = []
    for panel in panels:
        found += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
        found += targets(panel.get("panels", []))
    return found


EXPRESSIONS = targets(DASHBOARD["panels"])


def test_compose_scrape_jobs_find_every_process_on_its_ops_port():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {}
    for job in config["scrape_configs"]:
        (sd,) = job["dns_sd_configs"]
        (service,) = [
            r["replacement"] for r in job["relabel_configs"] if r["target_label"] == "service"
        ]
        jobs[service] = (sd["names"], sd["port"], job.get("metrics_path", "/metrics"))
    assert jobs == {
        name: ([name], ops_port(process), "/metrics") for name, process in processes().items()
    }
    for compose in sorted(ROOT.glob("compose*.yml")):
        services = yaml.safe_load(compose.read_text())["services"]
        for name in processes():
            assert services[name]["command"] == ["saas", "run", name], (compose.name, name)


def test_kubernetes_scrape_finds_annotated_pods_and_names_their_process():
    config = yaml.safe_load((PROMETHEUS / "kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["saas"]}}]
    relabel = job["relabel_configs"]
    keep = [r for r in relabel if r.get("action") == "keep"]
    assert any(
        r["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
        and r["regex"] == "true"
        for r in keep
    )
    by_target = {r.get("target_label"): r for r in relabel}
    assert by_target["__metrics_path__"]["source_labels"] == [
        "__meta_kubernetes_pod_annotation_prometheus_io_path"
    ]
    assert by_target["__address__"]["source_labels"][-1] == (
        "__meta_kubernetes_pod_annotation_prometheus_io_port"
    )
    assert by_target["service"]["source_labels"] == [
        "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    ]
    assert config["rule_files"] == ["alerts.yml"]


def test_the_dashboard_is_read_whole():
    assert len(EXPRESSIONS) >= 20
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("title", "expr"), EXPRESSIONS, ids=[t for t, _ in EXPRESSIONS])
def test_every_dashboard_metric_is_exported_and_every_join_matches(title, expr):
    used = set(METRIC.findall(expr))
    assert used or expr == "up", expr
    assert used - exported_metrics.every() == set()
    assert mismatched_joins(expr) == []
    assert exported_metrics.asked_of_the_wrong_process(expr) == []


def test_every_panel_asks_the_chosen_data_source():
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_dashboard_covers_what_the_alerts_watch():
    used = {m for _, expr in EXPRESSIONS for m in METRIC.findall(expr)}
    alerts = Path(PROMETHEUS / "alerts.yml").read_text()
    assert set(METRIC.findall(alerts)) - used <= {
        "saas_consumer_lag_errors_total",
        "saas_stream_config_drift",
    }
