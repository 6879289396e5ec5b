"""The token attack suite over HTTP: every forged, altered or stale token sent to an authenticated
route of the real gateway is a 401 problem with `WWW-Authenticate: Bearer`, never a 500."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest

from saas.common.db import Database
from saas.common.settings import DEFAULT_JWT_SECRET_KEY, DatabaseSettings
from saas.identity.keys import KeyRing
from tests.support.api import API, running_api
from tests.support.tokens import Keys, b64

pytestmark = pytest.mark.e2e
INVALID = 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory):
    yield from running_api(stack, tmp_path_factory, ADDRESS_FAILURES_LIMIT="1000")


@pytest.fixture(scope="module")
def genuine(api) -> dict:
    email = api.sign_up()
    return api.login(email)


@pytest.fixture(scope="module")
def real_key(genuine):
    """Identity's active signing key, unsealed as identity does: to sign tokens that are genuine
    in every way but one."""

    async def load():
        db = Database.from_settings(DatabaseSettings.load())
        try:
            return await KeyRing(db, DEFAULT_JWT_SECRET_KEY, access_ttl=900, leeway=30).signer()
        finally:
            await db.dispose()

    return asyncio.run(load())


def routes(api) -> list[str]:
    return [
        f"{API}/users/me",
        f"{API}/users/me/session",
        f"{API}/users/me/tenants",
        f"{API}/tenants/acme/members",
        f"{API}/tenants/acme/audit-events",
        f"{API}/tenants/acme/audit-events/verify",
        f"{API}/audit-events",
        f"{API}/audit-events/verify",
    ]


def assert_refused(api, authorization: str | None, www: str = INVALID) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for route in routes(api):
        response = api.http.get(route, headers=headers)
        assert response.status_code == 401, (route, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == www
        assert response.json()["code"] == "unauthorized"


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def resign(real_key, claims: dict, **headers) -> str:
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        real_key.key,
        algorithm="EdDSA",
        headers={"kid": real_key.kid, **headers},
    )


def test_a_genuine_token_passes(api, genuine):
    response = api.http.get(
        f"{API}/users/me", headers={"Authorization": f"Bearer {genuine['access_token']}"}
    )
    assert response.status_code == 200


def test_the_session_route_says_what_the_token_says(api, genuine):
    response = api.http.get(
        f"{API}/users/me/session", headers={"Authorization": f"Bearer {genuine['access_token']}"}
    )
    claims = claims_of(genuine["access_token"])
    body = response.json()
    assert response.status_code == 200
    assert body["user_id"] == claims["sub"] and body["session_id"] == claims["sid"]
    assert body["platform_admin"] is False


def test_no_token_is_a_401_naming_the_scheme(api):
    assert_refused(api, None, www="Bearer")


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "bearer", "Bearer  \t x", "Token abc"]
)
def test_a_malformed_authorization_header_is_a_401(api, value):
    assert_refused(api, value)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(api, genuine, alg):
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "x"}).encode())
    payload = genuine["access_token"].split(".")[1]
    assert_refused(api, f"Bearer {header}.{payload}.")


def test_an_hmac_token_keyed_with_the_public_key_is_refused(api, genuine):
    jwks = api.http.get("/.well-known/jwks.json").json()["keys"][0]
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": jwks["kid"]}).encode())
    payload = genuine["access_token"].split(".")[1]
    signature = hmac.new(
        jwks["x"].encode(), f"{header}.{payload}".encode(), hashlib.sha256
    ).digest()
    assert_refused(api, f"Bearer {header}.{payload}.{b64(signature)}")


@pytest.mark.parametrize(
    "kid", ["../../../../dev/null", "x' OR '1'='1", "https://evil.example/jwks"]
)
def test_a_kid_pointing_anywhere_but_the_jwks_is_refused(api, kid):
    attacker = Keys()
    attacker.add(kid)
    assert_refused(api, f"Bearer {attacker.sign(kid)}")


@pytest.mark.parametrize("header", ["jwk", "jku", "x5u", "x5c"])
def test_a_token_bringing_its_own_key_is_refused(api, header):
    attacker = Keys()
    kid = attacker.add()
    value = {"jwk": attacker.public_jwk(kid), "x5c": ["MIIB"]}.get(header, "https://evil.example/k")
    assert_refused(api, f"Bearer {attacker.sign(kid, headers={header: value})}")


def test_a_tampered_payload_is_refused(api, genuine):
    header, payload, signature = genuine["access_token"].split(".")
    claims = claims_of(genuine["access_token"])
    claims["sub"], claims["adm"] = str(uuid.uuid4()), True
    assert_refused(api, f"Bearer {header}.{b64(json.dumps(claims).encode())}.{signature}")


def test_a_stripped_signature_is_refused(api, genuine):
    header, payload, _ = genuine["access_token"].split(".")
    assert_refused(api, f"Bearer {header}.{payload}.")


def test_another_key_under_the_real_kid_is_refused(api, genuine):
    kid = jwt.get_unverified_header(genuine["access_token"])["kid"]
    impostor = Keys()
    impostor.add(kid)
    assert_refused(api, f"Bearer {impostor.sign(kid, **claims_of(genuine['access_token']))}")


@pytest.mark.parametrize(
    "change",
    [
        {"exp": -120},  # seconds from now, when the test runs (not when it is collected)
        {"nbf": 600},
        {"iat": 600},
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"sub": None},
        {"exp": None},
        {"jti": None},
        {"sub": 42},
    ],
)
def test_a_token_signed_by_the_real_key_with_a_bad_claim_is_refused(api, genuine, real_key, change):
    times = {k: int(time.time()) + v for k, v in change.items() if k in ("exp", "nbf", "iat") and v}
    claims = {**claims_of(genuine["access_token"]), **change, **times}
    assert_refused(api, f"Bearer {resign(real_key, claims)}")


def test_a_token_of_a_user_that_does_not_exist_is_refused_by_identity(api, genuine, real_key):
    token = resign(real_key, {**claims_of(genuine["access_token"]), "sub": str(uuid.uuid4())})
    response = api.http.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == INVALID


@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c", "a.b.c.d", "%%%.%%%.%%%", "x" * 9000])
def test_garbage_and_oversized_tokens_are_a_401(api, token):
    assert_refused(api, f"Bearer {token}")


def test_a_flood_of_unknown_kids_asks_identity_for_keys_at_most_once_or_twice(api):
    def jwks_requests() -> float:
        text = api.metrics()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("saas_bus_client_request_seconds_count")
            and 'operation="jwks"' in line
        )

    before = jwks_requests()
    attacker = Keys()
    for _ in range(50):
        kid = attacker.add()
        response = api.http.get(
            f"{API}/users/me", headers={"Authorization": f"Bearer {attacker.sign(kid)}"}
        )
        assert response.status_code == 401
    assert jwks_requests() - before <= 2
