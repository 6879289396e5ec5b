"""infra/nats in Kubernetes: three JetStream servers running nats.conf and auth.conf, each given
every variable those files read, reachable by the services and nothing else."""

from __future__ import annotations

import re

from tests.support.deployment import ROOT, by_name, objects

NATS = ROOT / "infra" / "nats"


def server() -> dict:
    return by_name(NATS, "StatefulSet")["nats"]


def test_three_servers_each_with_its_own_store():
    statefulset = server()
    assert statefulset["spec"]["replicas"] == 3
    assert statefulset["spec"]["serviceName"] == "nats"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    (budget,) = objects(NATS, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_routes_name_the_statefulsets_pods():
    routes = re.findall(r"nats-route://([\w-]+)\.(\w+):6222", (NATS / "nats.conf").read_text())
    assert routes == [(f"nats-{i}", "nats") for i in range(3)]


def test_every_variable_the_configuration_reads_is_given():
    text = (NATS / "nats.conf").read_text() + (NATS / "auth.conf").read_text()
    needed = set(re.findall(r"\$([A-Z][A-Z_]*)(?![\w.])", text))  # not $JS.API subjects
    (container,) = server()["spec"]["template"]["spec"]["containers"]
    given = {e["name"] for e in container["env"]}
    passwords = {n for n in needed if n.endswith("_NATS_PASSWORD")}
    assert needed - passwords <= given
    assert container["envFrom"] == [{"secretRef": {"name": "nats-passwords"}}]
    config = by_name(NATS, "ConfigMap")
    (name,) = config
    assert set(config[name]["data"]) == {"nats.conf", "auth.conf"}


def test_only_the_services_and_the_servers_themselves_reach_nats():
    (policy,) = objects(NATS, "NetworkPolicy")
    clients = [r for r in policy["spec"]["ingress"] if {p["port"] for p in r["ports"]} == {4222}]
    (rule,) = clients
    (source,) = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "saas"}
