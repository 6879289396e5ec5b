"""The public API through the real gateway, identity, tenancy and audit: the audit routes, who
may read them, a tenant's routes from another tenant's user, and a property-based run of the
OpenAPI document against the running stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.api import API, bearer, make_tenant, running_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    yield from running_api(
        stack,
        tmp_path_factory,
        names=("identity", "tenancy", "audit", "gateway"),
        ADDRESS_FAILURES_LIMIT="100000",
        RATE_LIMIT_USER="100000/minute",
        RATE_LIMIT_TENANT="100000/minute",
    )


@pytest.fixture(scope="module")
def owner(api) -> dict:
    return api.login(api.sign_up())


@pytest.fixture(scope="module")
def tenant(api, owner) -> tuple[str, str]:
    return make_tenant(api, owner)


def wait_for(get, until, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        response = get()
        if until(response):
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)


def make_admin(stack, email: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "saas.common.cli", "users", "make-admin", email],
        env={**os.environ, "DATABASE_URL": stack.database_url("saas_identity")},
        check=True,
        capture_output=True,
        timeout=60,
    )


# -- the audit routes ----------------------------------------------------------------------------
def test_owners_page_through_their_tenants_audit_log_and_verify_it(api, owner, tenant):
    tenant_id, slug = tenant
    invited = api.http.post(
        f"{API}/tenants/{slug}/invitations",
        json={"email": f"bo-{uuid.uuid4().hex[:6]}@example.com"},
        headers=bearer(owner),
    )
    assert invited.status_code == 201
    url = f"{API}/tenants/{slug}/audit-events"
    events = wait_for(
        lambda: api.http.get(url, headers=bearer(owner)),
        lambda r: r.status_code == 200 and len(r.json()["items"]) >= 2,
    ).json()["items"]
    assert {e["type"] for e in events} >= {"membership.added", "invitation.created"}
    assert [e["tenant_seq"] for e in events] == sorted(
        (e["tenant_seq"] for e in events), reverse=True
    )

    only = api.http.get(url, params={"type": "invitation.created"}, headers=bearer(owner)).json()
    assert {e["type"] for e in only["items"]} == {"invitation.created"}
    first = api.http.get(url, params={"limit": 1}, headers=bearer(owner)).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = api.http.get(
        url, params={"limit": 1, "cursor": first["next_cursor"]}, headers=bearer(owner)
    ).json()
    assert second["items"][0]["tenant_seq"] < first["items"][0]["tenant_seq"]
    future = api.http.get(url, params={"since": "2999-01-01T00:00:00Z"}, headers=bearer(owner))
    assert future.json()["items"] == []
    backwards = api.http.get(
        url,
        params={"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"},
        headers=bearer(owner),
    )
    assert backwards.status_code == 422 and backwards.json()["code"] == "validation_error"
    forged_cursor = api.http.get(url, params={"cursor": "nope"}, headers=bearer(owner))
    assert forged_cursor.status_code == 400

    verified = api.http.get(f"{url}/verify", headers=bearer(owner))
    assert verified.status_code == 200
    body = verified.json()
    assert body["ok"] and body["complete"] and body["checked"] >= 2
    assert body["tenant_id"] == tenant_id


def test_members_who_are_not_managers_get_403_and_outsiders_404(api, owner, tenant):
    _, slug = tenant
    member_email = api.sign_up()
    invited = api.http.post(
        f"{API}/tenants/{slug}/invitations", json={"email": member_email}, headers=bearer(owner)
    )
    assert invited.status_code == 201
    member = api.login(member_email)
    accepted = api.http.post(
        f"{API}/invitations/accept",
        json={"token": api.token_from_mail(member_email, "invitation")},
        headers=bearer(member),
    )
    assert accepted.status_code == 200
    outsider = api.login(api.sign_up())
    for path in ("audit-events", "audit-events/verify"):
        assert (
            api.http.get(f"{API}/tenants/{slug}/{path}", headers=bearer(member)).status_code == 403
        )
        refused = api.http.get(f"{API}/tenants/{slug}/{path}", headers=bearer(outsider))
        assert refused.status_code == 404 and "items" not in refused.json()
        assert api.http.get(f"{API}/tenants/{slug}/{path}").status_code == 401


def test_platform_admins_read_the_events_of_no_tenant_with_each_requests_id(api, stack):
    email = api.sign_up()
    user = api.login(email)
    assert api.http.get(f"{API}/audit-events", headers=bearer(user)).status_code == 403
    assert api.http.get(f"{API}/audit-events/verify", headers=bearer(user)).status_code == 403
    make_admin(stack, email)
    admin = api.login(email)  # the flag is in the next token
    request_id = f"trace-{uuid.uuid4().hex}"
    registered = api.http.post(
        f"{API}/auth/register",
        json={
            "email": f"cy-{uuid.uuid4().hex[:6]}@example.com",
            "password": "plum-orbit-castle-91",
        },
        headers={"X-Request-Id": request_id},
    )
    assert registered.status_code == 202 and registered.headers["x-request-id"] == request_id
    found = wait_for(
        lambda: api.http.get(
            f"{API}/audit-events", params={"type": "user.registered"}, headers=bearer(admin)
        ),
        lambda r: any(e["correlation_id"] == request_id for e in r.json()["items"]),
    )
    assert all(e["type"] == "user.registered" for e in found.json()["items"])
    verified = api.http.get(f"{API}/audit-events/verify", headers=bearer(admin)).json()
    assert verified["ok"] and verified["complete"] and verified["tenant_id"] == ""


# -- another tenant's routes ---------------------------------------------------------------------
def test_a_tenants_routes_answer_another_tenants_user_403_or_404_and_never_data(api, owner, tenant):
    _, slug = tenant
    owner_id = api.http.get(f"{API}/users/me", headers=bearer(owner)).json()["id"]
    other = api.login(api.sign_up())
    make_tenant(api, other)  # an owner, elsewhere
    attempts = [
        ("GET", f"/tenants/{slug}/members", None),
        ("PATCH", f"/tenants/{slug}/members/{owner_id}", {"role": "member"}),
        ("DELETE", f"/tenants/{slug}/members/{owner_id}", None),
        ("POST", f"/tenants/{slug}/invitations", {"email": "spy@example.com", "role": "owner"}),
        ("GET", f"/tenants/{slug}/audit-events", None),
        ("GET", f"/tenants/{slug}/audit-events/verify", None),
    ]
    for method, path, body in attempts:
        response = api.http.request(method, API + path, json=body, headers=bearer(other))
        assert response.status_code in (403, 404), (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert set(response.json()) <= {
            "type",
            "title",
            "status",
            "detail",
            "code",
            "instance",
            "request_id",
        }
    members = api.http.get(f"{API}/tenants/{slug}/members", headers=bearer(owner)).json()
    assert [m["role"] for m in members["items"] if m["user_id"] == owner_id] == ["owner"]


# -- the contract ----------------------------------------------------------------------------------
def test_every_route_and_problem_is_in_the_openapi_document(api):
    doc = api.http.get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"429", "503", "504"} <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])


def test_no_operation_answers_5xx_or_breaks_its_own_schema(api, owner):
    """Generated requests, valid and not, to every operation, with a real user's token: no 5xx,
    and every answer (status, content type, body) as the document says. A fixed number of
    examples per operation, derandomized, so the run is bounded and repeatable."""
    schema = schemathesis.openapi.from_url(str(api.http.base_url) + "/openapi.json")
    headers = bearer(owner)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 19
    calls: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case) -> None:
            response = case.call_and_validate(
                headers=headers,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )
            calls.append(case.operation.label)
            assert response.status_code < 500, (case.operation.label, response.text)

        check()
    assert set(calls) == {operation.label for operation in operations}
