"""infra/temporal/values.yaml runs Temporal on PostgreSQL with its UI, highly available, in the
namespace the services use. (The chart itself is not rendered here: helm has no wheel on the
package registry.)"""

from __future__ import annotations

import yaml

from tests.support.deployment import BASE_CONFIG, ROOT, by_name

VALUES = yaml.safe_load((ROOT / "infra" / "temporal" / "values.yaml").read_text())


def test_temporal_persists_and_searches_on_postgresql_over_tls():
    persistence = VALUES["server"]["config"]["persistence"]
    for store in ("default", "visibility"):
        sql = persistence[store]["sql"]
        assert persistence[store]["driver"] == "sql"
        assert sql["driver"] == "postgres12"
        assert sql["tls"]["enabled"] is True
        assert sql["existingSecret"], "the password comes from a Secret"
    for bundled in ("cassandra", "mysql", "postgresql", "elasticsearch"):
        assert VALUES[bundled]["enabled"] is False


def test_temporal_has_its_ui_and_two_of_each_role():
    assert VALUES["web"]["enabled"] is True
    assert VALUES["server"]["replicaCount"] >= 2
    for role in ("frontend", "history", "matching", "worker"):
        assert VALUES["server"][role]["podDisruptionBudget"]["maxUnavailable"] == 1


def test_temporal_creates_the_namespace_the_services_use():
    config = by_name(BASE_CONFIG, "ConfigMap")["saas-temporal"]["data"]
    created = {n["name"] for n in VALUES["server"]["config"]["namespaces"]["namespace"]}
    assert VALUES["server"]["config"]["namespaces"]["create"] is True
    assert config["TEMPORAL_NAMESPACE"] in created
    assert config["TEMPORAL_HOST"].endswith(":7233")
