"""Accounts, tokens, members and invitations through the real gateway, identity and tenancy."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from sqlalchemy import text

from saas.common.db import Database
from saas.common.settings import DatabaseSettings
from tests.support.api import API, PASSWORD, make_tenant, new_email, running_api
from tests.support.events import connect, stream_bodies

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    yield from running_api(
        stack,
        tmp_path_factory,
        LOGIN_FAILURES_BEFORE_LOCK="3",
        ADDRESS_FAILURES_LIMIT="1000",  # every request here comes from 127.0.0.1
    )


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def run(coro):
    return asyncio.run(coro)


async def _sql(statement: str, **params) -> list:
    db = Database.from_settings(DatabaseSettings.load())
    try:
        async with db.session() as session:
            result = await session.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        await db.dispose()


async def published_bodies(nats_url: str) -> list[bytes]:
    bus = await connect(nats_url)
    try:
        return await stream_bodies(bus.js)
    finally:
        await bus.close()


def test_sign_up_verify_login_refresh_and_log_out(api):
    email = new_email()
    registered = api.http.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 202 and registered.json()["status"] == "accepted"
    token = api.token_from_mail(email, "verify_email")
    assert api.http.post(f"{API}/auth/verify-email", json={"token": token}).json() == {
        "status": "ok"
    }

    login = api.http.post(f"{API}/auth/login", json={"email": email.upper(), "password": PASSWORD})
    assert login.status_code == 200 and login.headers["cache-control"] == "no-store"
    pair = login.json()
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900

    me = api.http.get(f"{API}/users/me", headers=bearer(pair)).json()
    assert me["email"] == email and me["email_verified"] is True
    assert api.http.get(f"{API}/users/me/tenants", headers=bearer(pair)).json() == {"items": []}

    renewed = api.http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200 and renewed.headers["cache-control"] == "no-store"
    reuse = api.http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reuse.status_code == 401 and reuse.headers["content-type"] == "application/problem+json"
    after_reuse = api.http.post(
        f"{API}/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]}
    )
    assert after_reuse.status_code == 401  # the whole family went with the reuse

    other = api.login(email)
    out = api.http.post(f"{API}/auth/logout", json={"refresh_token": other["refresh_token"]})
    assert out.status_code == 200
    gone = api.http.post(f"{API}/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert gone.status_code == 401


def same_apart_from_request_id(a, b) -> None:
    assert a.status_code == b.status_code
    assert a.headers["content-type"] == b.headers["content-type"]
    assert a.headers.get("www-authenticate") == b.headers.get("www-authenticate")
    assert a.content == b.content, (a.content, b.content)


def test_no_user_enumeration_through_register_login_or_reset(api):
    email = api.sign_up()
    rid = {"X-Request-Id": "enumeration-check"}  # the only part of a problem that could differ

    def post(path: str, body: dict):
        return api.http.post(f"{API}/auth/{path}", json=body, headers=rid)

    same_apart_from_request_id(
        post("register", {"email": email, "password": PASSWORD}),
        post("register", {"email": new_email(), "password": PASSWORD}),
    )
    same_apart_from_request_id(
        post("password-reset/request", {"email": email}),
        post("password-reset/request", {"email": new_email()}),
    )
    wrong = post("login", {"email": email, "password": "not-the-password-1"})
    unknown = post("login", {"email": new_email(), "password": "not-the-password-1"})
    same_apart_from_request_id(wrong, unknown)
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    for _ in range(2):
        post("login", {"email": email, "password": "not-the-password-1"})
    locked_with_right_password = post("login", {"email": email, "password": PASSWORD})
    same_apart_from_request_id(locked_with_right_password, unknown)


def test_a_password_reset_through_the_gateway_ends_every_session(api):
    email = api.sign_up()
    pair = api.login(email)
    assert (
        api.http.post(f"{API}/auth/password-reset/request", json={"email": email}).status_code
        == 202
    )
    token = api.token_from_mail(email, "password_reset")
    weak = api.http.post(
        f"{API}/auth/password-reset/confirm", json={"token": token, "new_password": "password"}
    )
    assert weak.status_code == 422
    assert {e["loc"][0] for e in weak.json()["errors"]} == {"new_password"}
    done = api.http.post(
        f"{API}/auth/password-reset/confirm",
        json={"token": token, "new_password": "violet-harbour-lamp-42"},
    )
    assert done.status_code == 200
    refresh = api.http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    assert api.login(email, "violet-harbour-lamp-42")


def test_the_jwks_is_published_at_the_root_and_verifies_tokens(api):
    import jwt

    response = api.http.get("/.well-known/jwks.json")
    assert response.status_code == 200 and "max-age" in response.headers["cache-control"]
    keys = {k["kid"]: k for k in response.json()["keys"]}
    pair = api.login(api.sign_up())
    kid = jwt.get_unverified_header(pair["access_token"])["kid"]
    key = jwt.PyJWK(keys[kid], algorithm="EdDSA")
    claims = jwt.decode(pair["access_token"], key.key, algorithms=["EdDSA"], audience="saas-api")
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "sid", "adm"} <= set(claims)


def test_members_and_invitations_through_the_gateway(api):
    owner = api.login(api.sign_up())
    tenant_id, slug = make_tenant(api, owner)
    members_url = f"{API}/tenants/{slug}/members"
    listed = api.http.get(members_url, headers=bearer(owner))
    assert listed.status_code == 200 and [m["role"] for m in listed.json()["items"]] == ["owner"]

    invitee_email = api.sign_up()
    invitee = api.login(invitee_email)
    invited = api.http.post(
        f"{API}/tenants/{slug}/invitations",
        json={"email": invitee_email, "role": "admin"},
        headers=bearer(owner),
    )
    assert invited.status_code == 201 and invited.json()["role"] == "admin"
    token = api.token_from_mail(invitee_email, "invitation")
    intruder = api.login(api.sign_up())
    stolen = api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=bearer(intruder)
    )
    assert stolen.status_code == 403
    accepted = api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=bearer(invitee)
    )
    assert accepted.status_code == 200 and accepted.json()["tenant_id"] == tenant_id
    twice = api.http.post(
        f"{API}/invitations/accept", json={"token": token}, headers=bearer(invitee)
    )
    assert twice.status_code == 400

    invitee_id = api.http.get(f"{API}/users/me", headers=bearer(invitee)).json()["id"]
    owner_id = api.http.get(f"{API}/users/me", headers=bearer(owner)).json()["id"]
    demote_owner = api.http.patch(
        f"{members_url}/{owner_id}", json={"role": "member"}, headers=bearer(invitee)
    )
    assert demote_owner.status_code == 403
    last_owner = api.http.patch(
        f"{members_url}/{owner_id}", json={"role": "admin"}, headers=bearer(owner)
    )
    assert last_owner.status_code == 409
    demoted = api.http.patch(
        f"{members_url}/{invitee_id}", json={"role": "member"}, headers=bearer(owner)
    )
    assert demoted.status_code == 200 and demoted.json()["role"] == "member"
    left = api.http.delete(f"{members_url}/{invitee_id}", headers=bearer(invitee))
    assert left.status_code == 204
    assert api.http.get(members_url, headers=bearer(invitee)).status_code == 404

    assert (
        api.http.get(f"{API}/tenants/no-such-tenant/members", headers=bearer(owner)).status_code
        == 404
    )
    assert api.http.get(members_url, headers=bearer(intruder)).status_code == 404
    anonymous = api.http.get(members_url)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


def test_no_password_or_token_appears_in_any_event_or_log_line(api, stack):
    password = "secret-Zebra-Quartz-7731"
    email = new_email("secrets")
    api.http.post(f"{API}/auth/register", json={"email": email, "password": password})
    verify = api.token_from_mail(email, "verify_email")
    api.http.post(f"{API}/auth/verify-email", json={"token": verify})
    api.http.post(f"{API}/auth/login", json={"email": email, "password": "wrong-" + password})
    pair = api.login(email, password)
    renewed = api.http.post(
        f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    ).json()
    api.http.post(f"{API}/auth/refresh", json={"refresh_token": pair["refresh_token"]})  # reuse
    api.http.post(f"{API}/auth/password-reset/request", json={"email": email})
    reset = api.token_from_mail(email, "password_reset")
    new_password = "secret-Walrus-Onyx-5520"
    api.http.post(
        f"{API}/auth/password-reset/confirm", json={"token": reset, "new_password": new_password}
    )
    second = api.login(email, new_password)
    _, slug = make_tenant(api, second)
    invitee = new_email("secrets-invitee")
    api.http.post(
        f"{API}/tenants/{slug}/invitations", json={"email": invitee}, headers=bearer(second)
    )
    invitation = api.token_from_mail(invitee, "invitation")
    api.http.get(f"{API}/users/me", headers=bearer(second))
    api.http.post(
        f"{API}/auth/logout", json={"refresh_token": second["refresh_token"], "everywhere": True}
    )

    secrets = {
        "password": password,
        "wrong password": "wrong-" + password,
        "new password": new_password,
        "verification token": verify,
        "verification secret": verify.split(".", 1)[1],
        "reset secret": reset.split(".", 1)[1],
        "invitation secret": invitation.split(".", 1)[1],
        "refresh token": pair["refresh_token"],
        "rotated refresh token": renewed["refresh_token"],
        "second refresh token": second["refresh_token"],
        "access token signature": pair["access_token"].rsplit(".", 1)[1],
        "second access token signature": second["access_token"].rsplit(".", 1)[1],
    }
    # What is still in the outbox, then what was published (the relay deletes what it published).
    pending = [bytes(b) for (b,) in run(_sql("SELECT body FROM identity.outbox ORDER BY seq"))]
    bodies = [*run(published_bodies(stack.nats_url)), *pending]
    assert len(bodies) > 10
    published = b"\n".join(bodies).decode()
    assert email in published  # the events of this flow are among them
    logs = api.logs()
    assert "request" in logs and len(logs) > 1000
    for name, secret in secrets.items():
        assert secret not in published, f"the {name} is in an event"
        assert secret not in logs, f"the {name} is in a log line"
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every line is JSON, none is a dump of a request
    assert orjson.loads(bodies[-1])["source"]
