"""Temporal killed and started again, under the real gateway, identity, tenancy and its worker:
a tenant asked for while Temporal is away is committed (`provisioning`), and once Temporal is
back the reconciler starts its workflow; a provisioning under way when Temporal dies finishes
when it returns. Every tenant ends ready, announced once. Temporal here is a dev server of this
module's own (its history in a file, so a restart keeps it)."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime

import pytest

from saas.devstack.servers import free_port
from saas.devstack.servers.temporal import temporal_server
from tests.support.api import API, running_api
from tests.support.tenants import announced, sql, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def temporal(tmp_path_factory):
    server = temporal_server(tmp_path_factory.mktemp("temporal"), free_port(), None)

    def start() -> None:
        server.start()
        wait_for("Temporal answering", server.ready, timeout=60)

    server.restart = start  # type: ignore[attr-defined]
    start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(stack, temporal, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tenancy")
    yield from running_api(
        stack,
        tmp_path_factory,
        names=("identity", "tenancy", "tenancy-worker", "gateway"),
        TEMPORAL_HOST=f"127.0.0.1:{temporal.ports['frontend']}",
        TEMPORAL_TASK_QUEUE=f"tenancy-outage-{uuid.uuid4().hex[:8]}",
        TENANCY_TEST_FAULTS=str(folder / "faults.json"),
        TENANCY_RECONCILE_INTERVAL="1",
        TENANCY_RECONCILE_AFTER="2",
        BACKUP_DIR=str(folder / "backups"),
    )


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def status_of(api, who: dict, slug: str) -> str | None:
    response = api.http.get(f"{API}/tenants/{slug}", headers=bearer(who))
    return response.json()["status"] if response.status_code == 200 else None


def kill(temporal) -> None:
    temporal.process.send_signal(signal.SIGKILL)
    temporal.process.wait(10)


def test_tenants_asked_for_while_temporal_is_down_end_ready_once_it_is_back(api, stack, temporal):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    kill(temporal)
    slugs = [f"outage-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    started = time.monotonic()
    ids = []
    for slug in slugs:
        created = api.http.post(
            f"{API}/tenants", json={"slug": slug, "name": "Outage"}, headers=bearer(owner)
        )
        assert created.status_code == 202, created.text
        assert created.json()["status"] == "provisioning"
        ids.append(created.json()["id"])
    assert time.monotonic() - started < 30, "a create waited on Temporal"
    time.sleep(3)  # the reconciler tries, and fails, meanwhile
    assert {status_of(api, owner, s) for s in slugs} == {"provisioning"}

    temporal.restart()
    for slug in slugs:
        wait_for(f"{slug} ready", lambda s=slug: status_of(api, owner, s) == "ready", timeout=120)
    time.sleep(1)  # anything published twice would be there by now
    created = announced(stack.nats_url, "tenant.created", ids[0], since)
    assert len(created) == 1
    for tenant_id in ids[1:]:
        assert len(announced(stack.nats_url, "tenant.created", tenant_id, since)) == 1


def test_a_provisioning_under_way_when_temporal_dies_finishes_when_it_returns(api, stack, temporal):
    import json
    from pathlib import Path

    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = f"midway-{uuid.uuid4().hex[:8]}"
    faults = Path(api.supervisor.env["TENANCY_TEST_FAULTS"])
    faults.write_text(json.dumps({slug: {"add_owner": "pause:5"}}))
    tenant = api.http.post(
        f"{API}/tenants", json={"slug": slug, "name": "Midway"}, headers=bearer(owner)
    ).json()
    wait_for(
        "seeded, then paused",
        lambda: sql(
            "SELECT 1 FROM public.workflow_executions WHERE tenant_id = :t AND step = 'seed_defaults'",
            t=tenant["id"],
        ),
    )
    kill(temporal)
    time.sleep(6)  # the step ends while Temporal is away
    faults.write_text("{}")
    temporal.restart()

    wait_for(f"{slug} ready", lambda: status_of(api, owner, slug) == "ready", timeout=120)
    time.sleep(1)
    assert len(announced(stack.nats_url, "tenant.created", tenant["id"], since)) == 1
    members = api.http.get(f"{API}/tenants/{slug}/members", headers=bearer(owner)).json()
    assert [m["role"] for m in members["items"]] == ["owner"]
