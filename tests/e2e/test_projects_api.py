"""Projects, the data inside each tenant's schema, through the real gateway, identity, tenancy and
its worker: what members may do, pages, errors that say what is wrong, events, and isolation
between tenants through every endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from saas.common.db_roles import TENANCY
from saas.common.tenant_names import schema_for
from tests.support.api import API, running_api
from tests.support.tenants import announced, sql, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    yield from running_api(
        stack,
        tmp_path_factory,
        names=("identity", "tenancy", "tenancy-worker", "gateway"),
        ADDRESS_FAILURES_LIMIT="1000",
        TEMPORAL_TASK_QUEUE=f"tenancy-e2e-{uuid.uuid4().hex[:8]}",
        BACKUP_DIR=str(tmp_path_factory.mktemp("backups")),
    )


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


@dataclass
class Team:
    slug: str
    id: str
    owner: dict
    admin: dict
    member: dict
    other_member: dict

    @property
    def people(self) -> list[dict]:
        return [self.owner, self.admin, self.member, self.other_member]


def join(api, team_slug: str, owner: dict, role: str) -> dict:
    email = api.sign_up()
    person = api.login(email)
    invited = api.http.post(
        f"{API}/tenants/{team_slug}/invitations",
        json={"email": email, "role": role},
        headers=bearer(owner),
    )
    assert invited.status_code == 201, invited.text
    token = api.token_from_mail(email, "invitation")
    accepted = api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=bearer(person)
    )
    assert accepted.status_code == 200, accepted.text
    return person


def team(api) -> Team:
    owner = api.login(api.sign_up())
    slug = f"team-{uuid.uuid4().hex[:8]}"
    created = api.http.post(
        f"{API}/tenants", json={"slug": slug, "name": slug}, headers=bearer(owner)
    )
    assert created.status_code == 202
    wait_for(
        f"{slug} ready",
        lambda: (
            api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()["status"] == "ready"
        ),
    )
    return Team(
        slug,
        created.json()["id"],
        owner,
        join(api, slug, owner, "admin"),
        join(api, slug, owner, "member"),
        join(api, slug, owner, "member"),
    )


def projects_url(slug: str, project_id: str | None = None) -> str:
    return f"{API}/tenants/{slug}/projects" + (f"/{project_id}" if project_id else "")


def new_project(api, t: Team, who: dict, name: str) -> dict:
    made = api.http.post(projects_url(t.slug), json={"name": name}, headers=bearer(who))
    assert made.status_code == 201, made.text
    return made.json()


def test_members_work_with_projects_within_their_role(api, stack):
    since = datetime.now(UTC)
    t = team(api)
    mine = new_project(api, t, t.member, "  Website relaunch  ")
    assert mine["name"] == "Website relaunch" and mine["description"] == ""
    url = projects_url(t.slug, mine["id"])

    assert api.http.get(url, headers=bearer(t.other_member)).json() == mine  # members read
    renamed = api.http.patch(url, json={"name": "Relaunch"}, headers=bearer(t.member))
    assert renamed.status_code == 200 and renamed.json()["name"] == "Relaunch"
    assert renamed.json()["updated_at"] > mine["updated_at"]
    not_theirs = api.http.patch(url, json={"description": "x"}, headers=bearer(t.other_member))
    assert not_theirs.status_code == 403 and "created it" in not_theirs.json()["detail"]
    by_admin = api.http.patch(url, json={"description": "by the admin"}, headers=bearer(t.admin))
    assert by_admin.status_code == 200 and by_admin.json()["name"] == "Relaunch"
    assert api.http.delete(url, headers=bearer(t.member)).status_code == 403  # even its creator
    assert api.http.delete(url, headers=bearer(t.admin)).status_code == 204
    assert api.http.get(url, headers=bearer(t.owner)).status_code == 404
    assert api.http.delete(url, headers=bearer(t.owner)).status_code == 404

    def types() -> list[str]:
        found = [
            e
            for kind in ("project.created", "project.updated", "project.deleted")
            for e in announced(stack.nats_url, kind, t.id, since)
            if e.subject == mine["id"]
        ]
        return sorted(e.type for e in found)

    wait_for(
        "the project's events",
        lambda: (
            types() == ["project.created", "project.deleted", "project.updated", "project.updated"]
        ),
    )


def test_projects_come_page_by_page_newest_first(api):
    t = team(api)
    made = [new_project(api, t, t.member, f"p{i}")["id"] for i in range(5)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.http.get(
            projects_url(t.slug), params=params, headers=bearer(t.other_member)
        ).json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(made))


@pytest.mark.parametrize(
    ("method", "body", "params", "says"),
    [
        ("post", {"name": "   "}, {}, ("name", "must not be blank")),
        ("post", {"name": "a\nb"}, {}, ("name", "control characters")),
        ("post", {"name": "x" * 201}, {}, ("name", "at most 200 characters")),
        ("post", {"name": "ok", "colour": "red"}, {}, ("colour", "Extra inputs")),
        ("post", {}, {}, ("name", "Field required")),
        (
            "get",
            None,
            {"cursor": "not-a-cursor"},
            (None, "cursor: not a cursor this service issued"),
        ),
        ("get", None, {"limit": 0}, ("limit", "greater than or equal to 1")),
        ("get", None, {"limit": 101}, ("limit", "less than or equal to 100")),
    ],
)
def test_invalid_requests_are_told_what_is_wrong(api, method, body, params, says):
    t = _shared_team(api)
    response = api.http.request(
        method.upper(), projects_url(t.slug), json=body, params=params, headers=bearer(t.member)
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    field, message = says
    if field is None:
        assert problem["detail"].startswith(message)
    else:
        assert any(e["loc"][-1] == field and message in e["msg"] for e in problem["errors"]), (
            problem
        )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, None, "nothing to change"),
        ({"name": None}, "name", "cannot be null"),
        ({"description": None}, "description", "cannot be null"),
        ({"name": "ok", "owner": "me"}, "owner", "Extra inputs"),
    ],
)
def test_an_invalid_change_is_told_what_is_wrong(api, body, field, message):
    t = _shared_team(api)
    project = new_project(api, t, t.member, "to change")
    response = api.http.patch(
        projects_url(t.slug, project["id"]), json=body, headers=bearer(t.member)
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any((field is None or e["loc"][-1] == field) and message in e["msg"] for e in errors)


_teams: dict[str, Team] = {}


def _shared_team(api) -> Team:
    if "shared" not in _teams:
        _teams["shared"] = team(api)
    return _teams["shared"]


def test_no_project_crosses_tenants_through_any_endpoint(api):
    teams = [team(api) for _ in range(3)]
    projects = {
        t.slug: [new_project(api, t, t.member, f"{t.slug} {i}") for i in range(2)] for t in teams
    }

    for t in teams:
        for other in (o for o in teams if o is not t):
            theirs = projects[other.slug][0]["id"]
            for who in t.people:
                h = bearer(who)
                calls = [
                    ("GET", projects_url(other.slug), None),
                    ("POST", projects_url(other.slug), {"name": "intruder"}),
                    ("GET", projects_url(other.slug, theirs), None),
                    ("PATCH", projects_url(other.slug, theirs), {"name": "taken over"}),
                    ("DELETE", projects_url(other.slug, theirs), None),
                    # their project's id through my own tenant: not there either
                    ("GET", projects_url(t.slug, theirs), None),
                    ("PATCH", projects_url(t.slug, theirs), {"name": "taken over"}),
                    ("DELETE", projects_url(t.slug, theirs), None),
                    ("GET", f"{API}/tenants/{other.slug}", None),
                    ("DELETE", f"{API}/tenants/{other.slug}", None),
                    ("GET", f"{API}/tenants/{other.slug}/members", None),
                ]
                for method, url, body in calls:
                    response = api.http.request(method, url, json=body, headers=h)
                    assert response.status_code == 404, (method, url, response.status_code)
                    assert (
                        other.slug not in response.text
                        or method != "GET"
                        or "no such" in response.text
                    )

    for t in teams:
        listed = api.http.get(projects_url(t.slug), headers=bearer(t.owner)).json()["items"]
        assert sorted(p["name"] for p in listed) == sorted(p["name"] for p in projects[t.slug])
        rows = sql(f'SELECT name FROM "tenant_{t.slug.replace("-", "_")}".projects ORDER BY name')
        assert [r[0] for r in rows] == sorted(p["name"] for p in projects[t.slug])


@pytest.mark.parametrize(
    "slug",
    [
        "acme; DROP SCHEMA public",
        "acme'; DROP SCHEMA public; --",
        "../x",
        "..",
        "tenant_acme",
        "ACME",
        'a"b',
        "public",
        "template",
        "pg-catalog",
    ],
)
def test_a_hostile_slug_is_refused_before_it_reaches_sql(api, slug):
    t = _shared_team(api)
    encoded = quote(slug, safe="")
    for method, url in [
        ("GET", f"{API}/tenants/{encoded}/projects"),
        ("POST", f"{API}/tenants/{encoded}/projects"),
        ("GET", f"{API}/tenants/{encoded}"),
        ("DELETE", f"{API}/tenants/{encoded}"),
        ("POST", f"{API}/tenants/{encoded}/retry"),
    ]:
        response = api.http.request(method, url, json={"name": "x"}, headers=bearer(t.owner))
        assert response.status_code == 404, (method, url, response.text)
    assert sql("SELECT count(*) > 0 FROM public.tenants") == [(True,)]  # public is still there


def test_a_caller_without_a_valid_token_learns_nothing(api):
    t = _shared_team(api)
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        response = api.http.get(projects_url(t.slug), headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


def saas_tenants(stack, *args: str) -> subprocess.CompletedProcess:
    """`saas tenants ...` as an operator runs it (the tenancy login)."""
    return subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "tenants", *args],
        env={**os.environ, "DATABASE_URL": stack.database_url(TENANCY.name)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_suspended_tenants_data_is_refused_until_it_is_resumed(api, stack):
    since = datetime.now(UTC)
    owner = api.login(api.sign_up())
    slug = f"paused-{uuid.uuid4().hex[:8]}"
    assert (
        api.http.post(
            f"{API}/tenants", json={"slug": slug, "name": slug}, headers=bearer(owner)
        ).status_code
        == 202
    )
    wait_for(
        f"{slug} ready",
        lambda: (
            api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()["status"] == "ready"
        ),
    )
    assert api.http.post(
        projects_url(slug), json={"name": "kept"}, headers=bearer(owner)
    ).is_success

    suspended = saas_tenants(stack, "suspend", slug)
    assert suspended.returncode == 0 and f"{slug}: ready -> suspended" in suspended.stdout
    refused = wait_for(  # every replica within TENANT_CACHE_SECONDS
        "projects refused",
        lambda: (
            (r := api.http.get(projects_url(slug), headers=bearer(owner))).status_code == 403 and r
        ),
        timeout=15,
    )
    assert "suspended" in refused.json()["detail"]
    shown = api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()
    assert shown["status"] == "suspended"
    again = saas_tenants(stack, "suspend", slug)
    assert again.returncode == 0 and "already is suspended" in again.stdout

    assert saas_tenants(stack, "resume", slug).returncode == 0
    listed = wait_for(
        "projects again",
        lambda: (
            (r := api.http.get(projects_url(slug), headers=bearer(owner))).status_code == 200 and r
        ),
        timeout=15,
    )
    assert [p["name"] for p in listed.json()["items"]] == ["kept"]

    # Announced once each (the second `suspend` changed nothing), by the operator, in order.
    tenant_id = shown["id"]
    for kind in ("tenant.suspended", "tenant.resumed"):
        wait_for(kind, lambda kind=kind: announced(stack.nats_url, kind, tenant_id, since))
    suspensions = announced(stack.nats_url, "tenant.suspended", tenant_id, since)
    resumptions = announced(stack.nats_url, "tenant.resumed", tenant_id, since)
    assert len(suspensions) == 1 and len(resumptions) == 1
    assert suspensions[0].data["slug"] == slug and suspensions[0].actor.id == "operator"
    assert suspensions[0].time < resumptions[0].time


def test_an_illegal_move_asked_by_an_operator_is_refused_and_changes_nothing(api, stack):
    slug = f"gone-{uuid.uuid4().hex[:8]}"
    sql(
        "INSERT INTO public.tenants (id, slug, name, status) VALUES (gen_random_uuid(), :s, :s, 'failed')",
        s=slug,
    )
    refused = saas_tenants(stack, "suspend", slug)
    assert refused.returncode != 0 and "failed cannot become suspended" in refused.stderr
    assert sql("SELECT status FROM public.tenants WHERE slug = :s", s=slug) == [("failed",)]
    hostile = saas_tenants(stack, "resume", "acme; DROP SCHEMA public")
    assert hostile.returncode != 0 and "SLUG" in hostile.stderr


def test_a_schema_dropped_under_a_ready_tenant_is_not_found_not_a_500(api):
    """The superuser drops the schema behind tenancy's back (its cache still says ready): every
    project route answers 404 `not_found`, reads (the read-only path) and writes alike."""
    owner = api.login(api.sign_up())
    slug = f"gone-{uuid.uuid4().hex[:8]}"
    made = api.http.post(f"{API}/tenants", json={"slug": slug, "name": slug}, headers=bearer(owner))
    assert made.status_code == 202
    wait_for(
        f"{slug} ready",
        lambda: (
            api.http.get(f"{API}/tenants/{slug}", headers=bearer(owner)).json()["status"] == "ready"
        ),
    )
    project = api.http.post(projects_url(slug), json={"name": "p"}, headers=bearer(owner)).json()
    assert api.http.get(projects_url(slug), headers=bearer(owner)).status_code == 200  # cached
    sql(f'DROP SCHEMA "{schema_for(slug)}" CASCADE')
    for method, url, body in (
        ("GET", projects_url(slug), None),
        ("GET", projects_url(slug, project["id"]), None),
        ("PATCH", projects_url(slug, project["id"]), {"name": "q"}),
        ("POST", projects_url(slug), {"name": "r"}),
    ):
        answer = api.http.request(method, url, json=body, headers=bearer(owner))
        assert answer.status_code == 404, (method, url, answer.status_code, answer.text)
        assert answer.json()["code"] == "not_found"
