"""Access-token verification under attack: every forged, altered or stale token is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest

from saas.common.tokens import InvalidToken, TokenVerifier
from tests.support.tokens import POLICY, Keys, b64


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def verifier(keys: Keys) -> TokenVerifier:
    return TokenVerifier(keys.jwks, POLICY, min_refresh_interval=60)


async def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.reason


async def test_a_genuine_token_verifies(keys, verifier):
    kid = keys.add()
    claims = await verifier.verify(keys.sign(kid, adm=True))
    assert claims.user_id == "user-1" and claims.session_id == "family-1" and claims.platform_admin


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_in_any_casing_is_refused(keys, verifier, alg):
    kid = keys.add()
    genuine = keys.sign(kid)
    payload = genuine.split(".")[1]
    header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}"):
        assert await refused(verifier, token) in ("algorithm_not_allowed", "malformed")


async def test_an_hmac_token_signed_with_the_public_key_is_refused(keys, verifier):
    """Key confusion: the public key, which anyone has, used as an HMAC secret."""
    kid = keys.add()
    public = keys.public_jwk(kid)["x"].encode()
    header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    payload = keys.sign(kid).split(".")[1]
    signature = hmac.new(public, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert (
        await refused(verifier, f"{header}.{payload}.{b64(signature)}") == "algorithm_not_allowed"
    )


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/etc/passwd", "x' OR '1'='1", "https://evil.example/jwks", "unknown"],
)
async def test_a_kid_pointing_anywhere_but_the_jwks_is_refused(keys, verifier, kid):
    attacker = Keys()
    attacker.add(kid)
    assert await refused(verifier, attacker.sign(kid)) == "unknown_key"


@pytest.mark.parametrize("header", ["jwk", "jku", "x5u", "x5c"])
async def test_a_token_bringing_its_own_key_is_refused(keys, verifier, header):
    kid = keys.add()
    values = {"jwk": keys.public_jwk(kid), "jku": "https://evil.example/jwks.json"}
    value = values.get(header, "https://evil.example/cert.pem")
    token = keys.sign(kid, headers={header: [value] if header == "x5c" else value})
    assert await refused(verifier, token) == "embedded_key"


async def test_a_tampered_payload_with_the_original_signature_is_refused(keys, verifier):
    kid = keys.add()
    header, payload, signature = keys.sign(kid).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"], claims["adm"] = "someone-else", True
    forged = b64(json.dumps(claims).encode())
    assert await refused(verifier, f"{header}.{forged}.{signature}") == "invalid"


async def test_a_stripped_signature_is_refused(keys, verifier):
    kid = keys.add()
    header, payload, _ = keys.sign(kid).split(".")
    assert await refused(verifier, f"{header}.{payload}.") == "invalid"


async def test_a_token_signed_by_another_key_with_our_kid_is_refused(keys, verifier):
    kid = keys.add()
    impostor = Keys()
    impostor.add(kid)
    assert await refused(verifier, impostor.sign(kid)) == "invalid"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        # Times are taken when the suite is collected, which may be many minutes before this
        # runs: a day ahead is still ahead then.
        ({"nbf": int(time.time()) + 86_400}, "not_yet_valid"),
        ({"iat": int(time.time()) + 86_400}, "not_yet_valid"),
        ({"iss": "someone-else"}, "wrong_issuer"),
        ({"aud": "another-api"}, "wrong_audience"),
    ],
)
async def test_stale_or_foreign_claims_are_refused(keys, verifier, claims, reason):
    kid = keys.add()
    assert await refused(verifier, keys.sign(kid, **claims)) == reason


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "exp", "jti"])
async def test_each_required_claim_must_be_there(keys, verifier, claim):
    kid = keys.add()
    assert await refused(verifier, keys.sign(kid, **{claim: None})) in (
        "missing_claim",
        "wrong_issuer",
        "wrong_audience",
    )


async def test_a_100_kb_token_is_refused_before_it_is_parsed(keys, verifier):
    kid = keys.add()
    token = keys.sign(kid, padding="x" * 100_000)
    assert await refused(verifier, token) == "too_large"
    assert keys.fetches == 0


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "é.é.é", "Bearer x"])
async def test_garbage_is_malformed_not_a_crash(verifier, token):
    assert await refused(verifier, token) in ("malformed", "algorithm_not_allowed")


async def test_a_flood_of_unknown_kids_fetches_the_jwks_once(keys, verifier):
    keys.add()
    attacker = Keys()
    for _ in range(200):
        kid = attacker.add()
        assert await refused(verifier, attacker.sign(kid)) == "unknown_key"
    assert keys.fetches == 1


async def test_tokens_arriving_while_the_jwks_is_fetched_wait_for_it_instead_of_failing(keys):
    """A cold gateway under load: the first token starts the fetch, the rest must not be refused
    as `unknown_key` just because a fetch began a moment ago and has not answered yet."""
    kid = keys.add()
    fetched = asyncio.Event()

    async def slow_jwks() -> dict:
        await fetched.wait()
        return await keys.jwks()

    verifier = TokenVerifier(slow_jwks, POLICY, min_refresh_interval=60)
    waiting = [asyncio.create_task(verifier.verify(keys.sign(kid))) for _ in range(20)]
    await asyncio.sleep(0.01)  # every one of them is past its cache lookup and waits
    fetched.set()
    claims = await asyncio.gather(*waiting, return_exceptions=True)
    assert [c.user_id if not isinstance(c, BaseException) else c for c in claims] == ["user-1"] * 20
    assert keys.fetches == 1


async def test_a_failed_fetch_fails_the_tokens_that_waited_for_it_and_is_tried_again_later(
    keys,
):
    kid = keys.add()
    answers: list = [ConnectionError("identity is down")]

    async def flaky_jwks() -> dict:
        await asyncio.sleep(0.01)
        if answers:
            raise answers.pop()
        return await keys.jwks()

    verifier = TokenVerifier(flaky_jwks, POLICY, min_refresh_interval=60, retry_after_failure=0.2)
    first = await asyncio.gather(
        *(verifier.verify(keys.sign(kid)) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in first), first  # never a 401 for them
    assert keys.fetches == 0
    with pytest.raises(ConnectionError):  # straight after, the failure answers without a fetch
        await verifier.verify(keys.sign(kid))
    await asyncio.sleep(0.25)
    assert (await verifier.verify(keys.sign(kid))).user_id == "user-1"
    assert keys.fetches == 1


async def test_rotation_old_tokens_verify_until_their_key_is_removed(keys):
    verifier = TokenVerifier(keys.jwks, POLICY, min_refresh_interval=0)
    old = keys.add()
    old_token = keys.sign(old)
    assert (await verifier.verify(old_token)).user_id == "user-1"
    new = keys.add()  # rotation: a new active key; the old one stays published
    assert (await verifier.verify(keys.sign(new))).user_id == "user-1"
    assert (await verifier.verify(old_token)).user_id == "user-1"
    del keys.private[old]  # the old key's tokens have expired: it leaves the JWKS
    verifier.forget_keys()
    assert await refused(verifier, old_token) == "unknown_key"


# -- verified tokens are remembered until they expire --------------------------------------------
async def test_a_verified_token_is_not_checked_again_until_it_expires(keys, verifier, monkeypatch):
    kid = keys.add()
    token = keys.sign(kid, exp=int(time.time()) + 60)
    first = await verifier.verify(token)
    checks = []
    original = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: checks.append(t) or original(t))
    assert await verifier.verify(token) is first and checks == []
    monkeypatch.setattr(time, "time", lambda: first.expires_at + POLICY.leeway + 1)
    await verifier.verify(token)  # past its expiry the cache no longer answers for it
    assert checks == [token]


async def test_the_cache_is_by_the_whole_token_so_a_forgery_with_a_genuine_jti_is_refused(
    keys, verifier
):
    kid = keys.add()
    genuine = keys.sign(kid, jti="the-jti", sub="victim")
    await verifier.verify(genuine)
    impostor = Keys()
    impostor.add(kid)
    forged = impostor.sign(kid, jti="the-jti", sub="attacker")
    assert await refused(verifier, forged) == "invalid"


async def test_the_cache_stays_bounded(keys):
    verifier = TokenVerifier(keys.jwks, POLICY, cache_size=3)
    kid = keys.add()
    for n in range(10):
        await verifier.verify(keys.sign(kid, jti=f"t{n}"))
    assert len(verifier._verified) == 3


async def test_without_a_cache_every_call_checks_the_token(keys, monkeypatch):
    verifier = TokenVerifier(keys.jwks, POLICY, cache_size=0)
    token = keys.sign(keys.add())
    checks = []
    original = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: checks.append(t) or original(t))
    first = await verifier.verify(token)
    assert await verifier.verify(token) == first and checks == [token, token]
    assert verifier._verified == {}
