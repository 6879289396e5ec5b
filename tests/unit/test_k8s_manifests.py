"""The Kubernetes manifests match the code they run: each Deployment runs a declared process with
its ports, probes, settings and secrets; production scales, spreads and pulls images as the
guide says; migrations are a step of their own; the network policies let through only what each
process's settings say it connects to. (Validity against the Kubernetes schemas:
test_deployment_files.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from saas.common.health import HealthChecks
from tests.support.deployment import (
    K8S,
    POSTGRES_PORTS,
    SECRET_SETTINGS,
    by_name,
    objects,
    ops_port,
    processes,
    public_port,
)

BASE, MIGRATE = K8S / "base", K8S / "migrate"
DEV, PROD = K8S / "overlays" / "dev", K8S / "overlays" / "prod"
OVERLAYS = [DEV, PROD]
ids = lambda p: str(p.relative_to(K8S))  # noqa: E731


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def secret_env(c: dict) -> dict[str, str]:
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def config_maps(kustomization: Path) -> dict[str, set[str]]:
    return {
        name: set(cm.get("data", {})) for name, cm in by_name(kustomization, "ConfigMap").items()
    }


def test_every_declared_process_has_a_deployment_and_nothing_else_does():
    assert set(by_name(BASE, "Deployment")) == set(processes())


@pytest.mark.parametrize("name", sorted(processes()))
def test_the_deployment_runs_its_process_from_its_service_image(name):
    c = container(by_name(BASE, "Deployment")[name])
    assert c["command"] == ["saas", "run", name]
    assert c["image"] == processes()[name].image


@pytest.mark.parametrize("name", sorted(processes()))
def test_ports_probes_and_scraping_are_where_the_image_serves_them(name):
    process = processes()[name]
    deployment = by_name(BASE, "Deployment")[name]
    c = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expected = {"ops": ops_port(process)}
    if public_port(process) is not None:
        expected["http"] = public_port(process)
    assert ports == expected

    served = {route.path for route in HealthChecks(version="0").router().routes}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "ops"}
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "ops"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "ops"}
    assert {"/health", "/health/ready"} <= served

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(ops_port(process))
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", sorted(processes()))
def test_each_deployment_mounts_exactly_the_secret_keys_its_process_reads(name):
    c = container(by_name(BASE, "Deployment")[name])
    assert secret_env(c) == processes()[name].secrets()
    assert not any("secretRef" in source for source in c.get("envFrom", []))


@pytest.mark.parametrize("name", sorted(processes()))
def test_each_deployment_takes_only_settings_groups_its_process_reads(name):
    process = processes()[name]
    c = container(by_name(BASE, "Deployment")[name])
    groups = config_maps(BASE)
    reads = process.reads()
    for source in c["envFrom"]:
        keys = groups[source["configMapRef"]["name"]]
        assert keys & reads, f"{name} reads nothing of {source['configMapRef']['name']}"
        assert not keys & SECRET_SETTINGS
    plain = {e["name"] for e in c.get("env", []) if "value" in e}
    assert plain <= reads


def test_every_setting_in_a_config_map_is_read_by_a_process_that_takes_it():
    takers: dict[str, set[str]] = {}
    for name, deployment in by_name(BASE, "Deployment").items():
        for source in container(deployment)["envFrom"]:
            takers.setdefault(source["configMapRef"]["name"], set()).update(
                processes()[name].reads()
            )
    for config_map, keys in config_maps(BASE).items():
        assert keys - takers.get(config_map, set()) == set(), config_map


def test_the_example_secret_holds_every_key_referenced_and_is_never_applied():
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    referenced = set()
    for kustomization in (BASE, MIGRATE):
        for kind in ("Deployment", "Job"):
            for o in objects(kustomization, kind):
                spec = o["spec"]["template"]["spec"]
                for c in spec.get("initContainers", []) + spec["containers"]:
                    referenced |= set(secret_env(c).values())
    assert referenced <= set(example["stringData"])
    for kustomization in (BASE, MIGRATE, DEV, PROD, DEV / "migrate", PROD / "migrate"):
        assert objects(kustomization, "Secret") == []


# -- logins: the runtime ones cannot alter schemas; migrations run apart ---------------------


def test_no_process_runs_with_the_migration_login_or_the_operators_nats_user():
    for name, deployment in by_name(BASE, "Deployment").items():
        keys = set(secret_env(container(deployment)).values())
        assert not keys & {"MIGRATE_DATABASE_URL", "OPS_NATS_URL"}, name


def test_the_migration_job_migrates_owners_first_then_every_tenant_as_its_owner():
    (job,) = objects(MIGRATE, "Job")
    spec = job["spec"]["template"]["spec"]
    (first,) = spec["initContainers"]
    (then,) = spec["containers"]
    assert first["command"] == ["saas", "migrate"]
    assert secret_env(first) == {"DATABASE_URL": "MIGRATE_DATABASE_URL", "NATS_URL": "OPS_NATS_URL"}
    assert then["command"][:3] == ["saas", "tenants", "migrate-all"]
    assert secret_env(then) == {"DATABASE_URL": "TENANCY_DATABASE_URL"}
    assert first["image"] == then["image"] == "saas-tenancy"
    assert spec["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_migrations_are_a_step_of_their_own_named_after_the_release(overlay):
    assert objects(overlay, "Job") == [], "the workloads must not carry the migration Job"
    (job,) = objects(overlay / "migrate", "Job")
    release = job["metadata"]["labels"]["app.kubernetes.io/version"]
    assert job["metadata"]["name"] == f"saas-migrate-{release}"
    # The step and the workloads it prepares run the same release.
    images = {c["image"] for c in _containers(objects(overlay / "migrate"))}
    assert images <= {c["image"] for c in _containers(objects(overlay))}
    for deployment in objects(overlay, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/version"] == release


def _containers(docs: list[dict]) -> list[dict]:
    found = []
    for o in docs:
        if o["kind"] in ("Deployment", "Job"):
            spec = o["spec"]["template"]["spec"]
            found += spec.get("initContainers", []) + spec["containers"]
    return found


# -- production ------------------------------------------------------------------------------


def test_production_autoscales_every_process_from_two_replicas():
    deployments = by_name(PROD, "Deployment")
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in objects(PROD, "HorizontalPodAutoscaler")
    }
    assert set(autoscalers) == set(deployments) == set(processes())
    for name, deployment in deployments.items():
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the count"
        assert autoscalers[name]["spec"]["minReplicas"] >= 2
        assert autoscalers[name]["spec"]["maxReplicas"] > autoscalers[name]["spec"]["minReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=ids)
def test_every_process_has_a_disruption_budget_and_spreads_over_zones_and_hosts(overlay):
    budgets = objects(overlay, "PodDisruptionBudget")
    for name, deployment in by_name(overlay, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(
            b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets
        ), name
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {s["topologyKey"] for s in spread} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for s in spread:
            assert s["labelSelector"]["matchLabels"].items() <= labels.items()


def test_production_pulls_immutable_images_from_the_operators_registry():
    containers = _containers(objects(PROD) + objects(PROD / "migrate"))
    assert containers
    release = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"]
        for d in objects(PROD, "Deployment")
    }
    for c in containers:
        image = c["image"]
        registry = image.split("/")[0]
        assert "/" in image and ("." in registry or ":" in registry), f"{image}: no registry"
        m = re.match(r"^[^@]+?(?::([\w.-]+))?(?:@(sha256:[0-9a-f]{64}))?$", image)
        assert m is not None, image
        tag, digest = m.groups()
        assert digest or (tag and tag != "latest"), f"{image}: neither a digest nor a fixed tag"
        assert tag in release or digest, f"{image} is not the release {release}"
        assert c["imagePullPolicy"] == "IfNotPresent"


def test_production_backups_volume_is_shared_by_every_worker_replica():
    (claim,) = objects(PROD, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


# -- network policies ------------------------------------------------------------------------


def _policies() -> list[dict]:
    return objects(BASE, "NetworkPolicy")


def _selects(policy: dict, labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]  # {} selects every pod
    if not (selector.get("matchLabels", {}).items() <= labels.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _pod_labels() -> dict[str, dict[str, str]]:
    pods = {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in by_name(BASE, "Deployment").items()
    }
    (job,) = objects(MIGRATE, "Job")
    pods["saas-migrate"] = job["spec"]["template"]["metadata"]["labels"]
    return pods


def test_everything_is_denied_unless_allowed():
    deny = [p for p in _policies() if p["spec"]["podSelector"] == {}]
    assert any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and "ingress" not in p["spec"]
        and "egress" not in p["spec"]
        for p in deny
    )


def test_only_the_gateway_api_is_reachable_from_outside_and_ops_ports_only_from_monitoring():
    for policy in _policies():
        for rule in policy["spec"].get("ingress", []):
            sources = rule["from"]
            assert sources and all("namespaceSelector" in s for s in sources), policy
            namespaces = {
                s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                for s in sources
            }
            ports = {p["port"] for p in rule["ports"]}
            if namespaces == {"monitoring"}:
                assert ports == {"ops"}
            else:
                selector = policy["spec"]["podSelector"]
                assert selector == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}
                assert ports == {"http"}


@pytest.mark.parametrize("pod", sorted(_pod_labels()))
def test_each_pod_reaches_only_dns_and_the_servers_its_settings_name(pod):
    labels = _pod_labels()[pod]
    allowed: set[int] = set()
    for policy in _policies():
        if "Egress" in policy["spec"]["policyTypes"] and _selects(policy, labels):
            for rule in policy["spec"].get("egress", []):
                allowed |= {p["port"] for p in rule["ports"]}
    if pod == "saas-migrate":  # saas migrate: the database and the streams
        needed = POSTGRES_PORTS | {4222}
    else:
        needed = processes()[pod].server_ports()
    assert allowed == needed | {53}
