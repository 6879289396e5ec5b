"""The compose files run each process as the code declares it: its command, its own secrets, only
settings it reads; compose.prod.yml as the production guide says (replicas, restarts, limits,
every secret from the environment, the release step apart). (Validity against the Compose
specification: test_deployment_files.py.)"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support.deployment import ROOT, SECRET_SETTINGS, processes

DEV = yaml.safe_load((ROOT / "compose.yml").read_text())["services"]
PROD = yaml.safe_load((ROOT / "compose.prod.yml").read_text())["services"]
FROM_ENV = re.compile(r"^\$\{(\w+)(:[?-].*)?\}$")


@pytest.mark.parametrize("name", sorted(processes()))
def test_production_runs_each_process_apart_replicated_restarted_and_bounded(name):
    service = PROD[name]
    assert service["command"] == ["saas", "run", name]
    assert service["restart"] == "unless-stopped"
    assert service["deploy"]["replicas"] >= 2
    assert {"cpus", "memory"} <= set(service["deploy"]["resources"]["limits"])
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["environment"]["APP_ENV"] == "production"
    image = service["image"]
    assert image.startswith("${REGISTRY:?")
    assert f"/{processes()[name].image}:${{RELEASE:?" in image


@pytest.mark.parametrize("name", sorted(processes()))
def test_production_takes_each_secret_from_the_environment_under_its_own_name(name):
    env = PROD[name]["environment"]
    expected = processes()[name].secrets()
    secrets = {k: v for k, v in env.items() if k in SECRET_SETTINGS}
    assert set(secrets) == set(expected)
    for setting, value in secrets.items():
        m = FROM_ENV.match(value)
        assert m is not None, f"{name}: {setting} is written in the file"
        assert m.group(1) == expected[setting]
        assert m.group(2).startswith(":?"), f"{name}: {setting} must be required"


def test_production_gives_no_setting_an_empty_default():
    # An empty value is a value: a path of "", a login of "". Optional settings are left out,
    # but for comma-separated lists, where empty means none (as in the ConfigMaps).
    lists = {"TRUSTED_PROXIES", "CORS_ORIGINS"}
    for name in processes():
        for setting, value in PROD[name]["environment"].items():
            assert setting in lists or ":-}" not in str(value), f"{name}: {setting}"


@pytest.mark.parametrize("compose", ["compose.yml", "compose.prod.yml"])
@pytest.mark.parametrize("name", sorted(processes()))
def test_each_process_is_given_only_settings_it_reads(compose, name):
    services = DEV if compose == "compose.yml" else PROD
    given = set(services[name]["environment"])
    assert given - processes()[name].reads() == set()


def test_the_release_step_migrates_owners_then_tenants_as_their_owner():
    for services in (DEV, PROD):
        command = services["migrate"]["command"][-1]
        assert "saas migrate &&" in command
        assert "DATABASE_URL=$$TENANCY_DATABASE_URL saas tenants migrate-all --quiet" in command
    assert PROD["migrate"]["environment"]["DATABASE_URL"].startswith("${MIGRATE_DATABASE_URL:?")
    assert PROD["migrate"]["environment"]["NATS_URL"].startswith("${OPS_NATS_URL:?")
    assert PROD["migrate"]["profiles"] == ["release"], "`up` must never run it"
    for name in processes():
        assert "migrate" not in PROD[name].get("depends_on", {})


def test_the_worker_keeps_backups_on_a_volume():
    for services in (DEV, PROD):
        worker = services["tenancy-worker"]
        assert worker["environment"]["BACKUP_DIR"] == "/backups"
        assert "tenant-backups:/backups" in worker["volumes"]
