"""Tenants through the real gateway, identity, tenancy and its worker, on the real Temporal dev
server: provisioning end to end, a worker killed mid-way, a failed step and its retry, fifty at
once, idempotency keys, deletion with its backup."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from saas.common.migrations import find_alembic_ini, tenant_revisions
from saas.common.tenant_names import schema_for
from saas.devstack.servers import free_port
from tests.support.api import API, running_api
from tests.support.tenants import announced, sql, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tenancy")
    yield from running_api(
        stack,
        tmp_path_factory,
        names=("identity", "tenancy", "tenancy-worker", "gateway"),
        ADDRESS_FAILURES_LIMIT="1000",
        TEMPORAL_TASK_QUEUE=f"tenancy-e2e-{uuid.uuid4().hex[:8]}",
        TENANCY_TEST_FAULTS=str(folder / "faults.json"),
        BACKUP_DIR=str(folder / "backups"),
    )


@pytest.fixture(scope="module")
def faults(api) -> dict:
    """Planned failures the worker reads before each step (APP_ENV=test only)."""
    planned: dict = {}
    path = api.supervisor.env["TENANCY_TEST_FAULTS"]

    class Faults:
        def plan(self, slug: str, step: str, what: str) -> None:
            planned.setdefault(slug, {})[step] = what
            self._write()

        def clear(self, slug: str) -> None:
            planned.pop(slug, None)
            self._write()

        def _write(self) -> None:
            with open(path, "w") as f:
                json.dump(planned, f)

    return Faults()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def new_slug(prefix: str = "acme") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(api, who: dict, slug: str, name: str = "Acme", key: str | None = None) -> httpx.Response:
    headers = bearer(who) | ({"Idempotency-Key": key} if key else {})
    return api.http.post(f"{API}/tenants", json={"slug": slug, "name": name}, headers=headers)


def status_of(api, who: dict, slug: str) -> str | None:
    response = api.http.get(f"{API}/tenants/{slug}", headers=bearer(who))
    return response.json()["status"] if response.status_code == 200 else None


def until_status(api, who: dict, slug: str, *wanted: str, timeout: float = 60) -> str:
    return wait_for(
        f"{slug} {' or '.join(wanted)}",
        lambda: (s := status_of(api, who, slug)) in wanted and s,
        timeout=timeout,
    )


def nats(stack) -> str:
    return stack.nats_url


def test_a_tenant_is_provisioned_into_a_schema_at_head_and_announced_once(api, stack):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = new_slug()

    created = create(api, owner, slug, "Acme Corporation")
    assert created.status_code == 202, created.text
    tenant = created.json()
    assert tenant["status"] == "provisioning" and tenant["slug"] == slug

    events = wait_for(
        "tenant.created on JetStream",
        lambda: announced(nats(stack), "tenant.created", tenant["id"], since),
    )
    assert len(events) == 1
    assert events[0].data == {
        "tenant_id": tenant["id"],
        "slug": slug,
        "name": "Acme Corporation",
        "schema_name": schema_for(slug),
    }
    shown = api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()
    assert (shown["status"], shown["role"]) == ("ready", "owner")
    head = tenant_revisions(find_alembic_ini())[-1]
    assert sql(f'SELECT version_num FROM "{schema_for(slug)}".alembic_version') == [(head,)]
    members = api.http.get(f"{API}/tenants/{slug}/members", headers=bearer(owner)).json()
    assert [m["role"] for m in members["items"]] == ["owner"]
    mine = api.http.get(f"{API}/tenants", headers=bearer(owner)).json()["items"]
    assert [(t["slug"], t["role"]) for t in mine] == [(slug, "owner")]
    started = announced(nats(stack), "tenant.provisioning_started", tenant["id"], since)
    assert len(started) == 1 and started[0].actor.id == shown_user(api, owner)


def shown_user(api, who: dict) -> str:
    return api.http.get(f"{API}/users/me", headers=bearer(who)).json()["id"]


def test_slugs_are_checked_before_anything_is_created(api):
    owner = api.login(api.sign_up())
    for slug, reason in [
        ("admin", "reserved"),
        ("template", "reserved"),
        ("Acme", "lowercase"),
        ("acme; DROP SCHEMA public", "lowercase"),
        ("../x", "lowercase"),
        ("ab", "at least 3 characters"),
    ]:
        refused = create(api, owner, slug)
        assert refused.status_code == 422, (slug, refused.text)
        assert reason in json.dumps(refused.json()), slug
    slug = new_slug()
    assert create(api, owner, slug).status_code == 202
    taken = create(api, api.login(api.sign_up()), slug)
    assert taken.status_code == 409 and "taken" in taken.json()["detail"]
    assert (
        api.http.post(f"{API}/tenants", json={"slug": new_slug(), "name": "x"}).status_code == 401
    )


def test_the_same_idempotency_key_gives_one_tenant(api):
    owner = api.login(api.sign_up())
    slug, key = new_slug(), str(uuid.uuid4())
    first = create(api, owner, slug, key=key)
    again = create(api, owner, slug, key=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other_body = create(api, owner, new_slug(), key=key)
    assert other_body.status_code == 409 and "Idempotency-Key" in other_body.json()["detail"]
    # Keys are the user's own: someone else's same key is another request (here: a taken slug).
    stranger = create(api, api.login(api.sign_up()), slug, key=key)
    assert stranger.status_code == 409 and "taken" in stranger.json()["detail"]
    assert sql("SELECT count(*) FROM public.tenants WHERE slug = :s", s=slug) == [(1,)]
    until_status(api, owner, slug, "ready")


def test_fifty_tenants_created_at_once_all_end_ready(api, stack):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slugs = [new_slug("burst") for _ in range(50)]

    async def create_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        f"{API}/tenants",
                        json={"slug": s, "name": s},
                        headers=bearer(owner) | {"Idempotency-Key": s},
                    )
                    for s in slugs
                )
            )

    responses = asyncio.run(create_all())
    assert [r.status_code for r in responses] == [202] * 50
    ids = {r.json()["id"] for r in responses}
    wait_for(
        "all fifty ready",
        lambda: (
            sql(
                "SELECT count(*) FROM public.tenants WHERE slug = ANY(:s) AND status = 'ready'",
                s=slugs,
            )
            == [(50,)]
        ),
        timeout=120,
    )
    statuses = sql(
        "SELECT status, count(*) FROM public.tenants WHERE slug = ANY(:s) GROUP BY 1", s=slugs
    )
    assert statuses == [("ready", 50)]
    created = wait_for(
        "fifty tenant.created",
        lambda: (
            (e := [x for x in asyncio.run(_all(stack, since)) if x.tenant_id in ids])
            and len(e) >= 50
            and e
        ),
    )
    assert sorted(e.tenant_id for e in created) == sorted(ids)  # each exactly once
    mine = api.http.get(f"{API}/tenants", headers=bearer(owner)).json()["items"]
    assert {t["slug"] for t in mine} == set(slugs)


async def _all(stack, since):
    from tests.support.tenants import events_since

    return await events_since(stack.nats_url, "tenant.created", since)


def test_a_worker_killed_mid_provisioning_still_ends_ready_with_one_event(api, stack, faults):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = new_slug("killed")
    faults.plan(slug, "add_owner", "pause:30")  # holds it between seeding and the owner
    tenant = create(api, owner, slug).json()
    wait_for(
        "seeded, then paused",
        lambda: sql(
            "SELECT 1 FROM public.workflow_executions WHERE tenant_id = :t AND step = 'seed_defaults'",
            t=tenant["id"],
        ),
    )
    worker = api.children["tenancy-worker"]
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(10)
    faults.clear(slug)
    api.supervisor.children.remove(worker)
    [restarted] = [
        c
        for c in api.supervisor.start([worker.spec], {worker.spec.name: free_port()})
        if c.spec.name == worker.spec.name
    ]
    api.children["tenancy-worker"] = restarted

    assert until_status(api, owner, slug, "ready", "failed", timeout=90) == "ready"
    events = wait_for(
        "tenant.created", lambda: announced(nats(stack), "tenant.created", tenant["id"], since)
    )
    time.sleep(1)  # anything published twice would be there by now
    assert len(announced(nats(stack), "tenant.created", tenant["id"], since)) == len(events) == 1


def test_a_failed_step_leaves_nothing_behind_and_a_retry_succeeds(api, stack, faults):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = new_slug("broken")
    metric = 'saas_tenant_provisioning_failures_total{step="seed_defaults"}'
    before = worker_metric(api, metric)
    faults.plan(slug, "seed_defaults", "fail")

    tenant = create(api, owner, slug).json()
    assert until_status(api, owner, slug, "failed", "ready") == "failed"
    shown = api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()
    assert shown["failure_reason"] == "seed_defaults: injected failure before seed_defaults"
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema_for(slug)) == []
    failed = wait_for(
        "tenant.provisioning_failed",
        lambda: announced(nats(stack), "tenant.provisioning_failed", tenant["id"], since),
    )
    assert [e.data["error"] for e in failed] == [shown["failure_reason"]]
    assert worker_metric(api, metric) == before + 1
    outsider = api.login(api.sign_up())
    assert api.http.get(f"{API}/tenants/{slug}", headers=bearer(outsider)).status_code == 404
    assert api.http.post(f"{API}/tenants/{slug}/retry", headers=bearer(outsider)).status_code == 404

    faults.clear(slug)
    retried = api.http.post(f"{API}/tenants/{slug}/retry", headers=bearer(owner))
    assert retried.status_code == 202 and retried.json()["status"] == "provisioning"
    assert until_status(api, owner, slug, "ready", "failed") == "ready"
    assert (
        api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()["failure_reason"]
        is None
    )
    again = api.http.post(f"{API}/tenants/{slug}/retry", headers=bearer(owner))
    assert again.status_code == 409  # only a failed tenant is retried
    wait_for(
        "tenant.created", lambda: announced(nats(stack), "tenant.created", tenant["id"], since)
    )


def worker_metric(api, line_start: str) -> float:
    body = httpx.get(api.children["tenancy-worker"].url + "/metrics").text
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_worker_exports_provisioning_and_temporal_metrics(api):
    owner = api.login(api.sign_up())
    slug = new_slug("metrics")
    create(api, owner, slug)
    until_status(api, owner, slug, "ready")
    body = wait_for(
        "metrics",
        lambda: (
            (b := httpx.get(api.children["tenancy-worker"].url + "/metrics").text)
            and "temporal_workflow_completed_total" in b
            and b
        ),
    )
    assert "saas_tenant_provisioning_duration_seconds_bucket" in body
    assert "temporal_local_activity_execution_latency_bucket" in body


def test_an_owner_deletes_a_tenant_its_schema_is_backed_up_and_its_members_go(api, stack):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = new_slug("doomed")
    tenant = create(api, owner, slug).json()
    until_status(api, owner, slug, "ready")
    member_email = api.sign_up()
    member = api.login(member_email)
    invite = api.http.post(
        f"{API}/tenants/{slug}/invitations", json={"email": member_email}, headers=bearer(owner)
    )
    assert invite.status_code == 201
    token = api.token_from_mail(member_email, "invitation")
    accepted = api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=bearer(member)
    )
    assert accepted.status_code == 200
    api.http.post(
        f"{API}/tenants/{slug}/projects", json={"name": "kept in the backup"}, headers=bearer(owner)
    )

    refused = api.http.delete(f"{API}/tenants/{slug}", headers=bearer(member))
    assert refused.status_code == 403
    deleting = api.http.delete(f"{API}/tenants/{slug}", headers=bearer(owner))
    assert deleting.status_code == 202 and deleting.json()["status"] == "deleting"

    wait_for(
        "tenant.deleted", lambda: announced(nats(stack), "tenant.deleted", tenant["id"], since)
    )
    assert api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).status_code == 404
    assert sql("SELECT 1 FROM pg_namespace WHERE nspname = :s", s=schema_for(slug)) == []
    [(location, size)] = sql(
        "SELECT location, bytes FROM public.tenant_backups WHERE tenant_id = :t", t=tenant["id"]
    )
    assert size > 0 and location.endswith(".dump")
    wait_for(  # identity saw tenant.deleted and removed the memberships (its own table)
        "memberships gone",
        lambda: (
            sql("SELECT count(*) FROM identity.memberships WHERE tenant_id = :t", t=tenant["id"])
            == [(0,)]
        ),
    )
    for person in (owner, member):
        mine = api.http.get(f"{API}/tenants", headers=bearer(person)).json()["items"]
        assert slug not in {t["slug"] for t in mine}
    again = create(api, owner, slug)
    assert again.status_code == 409  # a slug is never given out again
