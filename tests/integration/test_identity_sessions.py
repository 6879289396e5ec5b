"""Sessions against real PostgreSQL and NATS: rotation and reuse, lockout, logout, key rotation,
and a loop that keeps answering while passwords are hashed."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from sqlalchemy import text

from saas.common.bus.requests import Empty
from saas.common.contracts.identity import (
    Done,
    Jwks,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    TokenPair,
    User,
)
from saas.common.contracts.system import PingReply
from saas.common.errors import ErrorCode, ServiceError
from saas.common.tokens import InvalidToken, TokenPolicy, TokenVerifier
from tests.support.identity import PASSWORD, events, new_email


async def refused(call) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call
    return caught.value


async def refresh(identity, pair: TokenPair) -> TokenPair:
    return await identity.call(
        "refresh", RefreshRequest(refresh_token=pair.refresh_token), TokenPair
    )


async def test_each_refresh_rotates_the_token_and_keeps_the_session(identity):
    email = await identity.signed_up()
    first = await identity.login(email)
    second = await refresh(identity, first)
    third = await refresh(identity, second)
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    verifier = identity.process.tokens
    claims = [await verifier.verify(p.access_token) for p in (first, second, third)]
    assert len({c.session_id for c in claims}) == 1 and len({c.token_id for c in claims}) == 3


async def test_reused_refresh_token_revokes_family(identity):
    email = await identity.signed_up()
    first = await identity.login(email)
    other_session = await identity.login(email)
    second = await refresh(identity, first)
    reuse = await refused(refresh(identity, first))  # the thief, or the owner after the thief
    assert reuse.code is ErrorCode.UNAUTHORIZED
    assert (await refused(refresh(identity, second))).code is ErrorCode.UNAUTHORIZED  # whole family
    assert await refresh(identity, other_session)  # another family is untouched
    claims = await identity.process.tokens.verify(first.access_token)
    (event,) = await events(identity, "auth.refresh_token_reused", subject=claims.user_id)
    assert event["data"]["family_id"] == claims.session_id
    assert event["data"]["ip_address"] == "192.0.2.10"


async def test_concurrent_refreshes_with_one_token_let_exactly_one_through(identity):
    email = await identity.signed_up()
    pair = await identity.login(email)
    results = await asyncio.gather(
        *(refresh(identity, pair) for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, TokenPair) for r in results) == 1


async def test_garbage_and_expired_refresh_tokens_are_refused(identity):
    email = await identity.signed_up()
    pair = await identity.login(email)
    for token in ("x", "A" * 43, pair.access_token[:500]):
        error = await refused(
            identity.call("refresh", RefreshRequest(refresh_token=token), TokenPair)
        )
        assert error.code is ErrorCode.UNAUTHORIZED
    async with identity.db.session() as session:
        await session.execute(
            text(
                "UPDATE identity.refresh_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL AND family_id IN (SELECT id FROM identity.refresh_families WHERE user_id = (SELECT id FROM identity.users WHERE email = :e))"
            ),
            {"e": email},
        )
    assert (await refused(refresh(identity, pair))).code is ErrorCode.UNAUTHORIZED


async def test_logout_ends_one_session_and_everywhere_ends_all(identity):
    email = await identity.signed_up()
    a, b, c = [await identity.login(email) for _ in range(3)]
    await identity.call("logout", LogoutRequest(refresh_token=a.refresh_token), Done)
    assert (await refused(refresh(identity, a))).code is ErrorCode.UNAUTHORIZED
    b = await refresh(identity, b)
    await identity.call(
        "logout", LogoutRequest(refresh_token=b.refresh_token, everywhere=True), Done
    )
    for pair in (b, c):
        assert (await refused(refresh(identity, pair))).code is ErrorCode.UNAUTHORIZED
    # An unknown token changes nothing and gets the same answer.
    assert await identity.call("logout", LogoutRequest(refresh_token="nope"), Done) == Done()


async def test_a_locked_account_answers_exactly_as_a_wrong_password(identity):
    email = await identity.signed_up()
    ip = "198.51.100.7"
    wrong = await identity.raw(
        "login", {"email": email, "password": "wrong-password-1"}, **{"Saas-Client-Ip": ip}
    )
    for _ in range(2):
        await identity.raw(
            "login", {"email": email, "password": "wrong-password-1"}, **{"Saas-Client-Ip": ip}
        )
    locked_right = await identity.raw(
        "login", {"email": email, "password": PASSWORD}, **{"Saas-Client-Ip": ip}
    )
    unknown = await identity.raw(
        "login", {"email": new_email(), "password": PASSWORD}, **{"Saas-Client-Ip": ip}
    )
    assert locked_right == wrong == unknown  # byte for byte
    user_id = (
        await identity.process.tokens.verify((await _login_later(identity, email)).access_token)
    ).user_id
    assert await events(identity, "user.account_locked", subject=user_id)


async def _login_later(identity, email: str) -> TokenPair:
    """Log in once the lock (1 s in these tests) has passed."""
    for _ in range(40):
        try:
            return await identity.login(email, ip="198.51.100.8")
        except ServiceError:
            await asyncio.sleep(0.25)
    raise AssertionError("still locked")


async def test_a_successful_login_resets_the_failure_count(identity):
    email = await identity.signed_up()
    for _ in range(2):
        await refused(identity.login(email, "wrong-password-1", ip="198.51.100.20"))
    await identity.login(email, ip="198.51.100.20")
    for _ in range(2):  # two more would lock it had the count not started again
        await refused(identity.login(email, "wrong-password-1", ip="198.51.100.20"))
    assert await identity.login(email, ip="198.51.100.20")


async def test_the_lock_doubles_after_it_expires_and_fails_again(identity):
    email = await identity.signed_up()
    for _ in range(3):
        await refused(identity.login(email, "wrong-password-1", ip="198.51.100.30"))
    async with identity.db.session() as session:
        first = (
            await session.execute(
                text("SELECT locked_until - now(), locks FROM identity.users WHERE email = :e"),
                {"e": email},
            )
        ).one()
    assert first.locks == 1 and 0 < first[0].total_seconds() <= 1.0
    await asyncio.sleep(1.1)
    for _ in range(3):
        await refused(identity.login(email, "wrong-password-1", ip="198.51.100.30"))
    async with identity.db.session() as session:
        second = (
            await session.execute(
                text("SELECT locked_until - now(), locks FROM identity.users WHERE email = :e"),
                {"e": email},
            )
        ).one()
    assert second.locks == 2 and 1.0 < second[0].total_seconds() <= 2.0


async def test_an_address_with_too_many_failures_is_refused_without_hashing(identity):
    ip = "203.0.113.99"
    for _ in range(10):
        error = await refused(identity.login(new_email(), "wrong-password-1", ip=ip))
        assert error.code is ErrorCode.UNAUTHORIZED
    email = await identity.signed_up()
    started = time.perf_counter()
    blocked = await refused(identity.login(email, ip=ip))  # even the right password
    assert blocked.code is ErrorCode.RATE_LIMITED and time.perf_counter() - started < 0.04
    assert await identity.login(email, ip="203.0.113.100")  # another address is not


async def test_a_login_without_a_client_address_counts_against_the_account_only(identity):
    email = await identity.signed_up()
    login = LoginRequest(email=email, password=PASSWORD)
    assert (await identity.call("login", login, TokenPair, ip=None)).access_token
    wrong = LoginRequest(email=email, password="wrong-password-1")
    assert (await refused(identity.call("login", wrong, TokenPair, ip=None))).code is (
        ErrorCode.UNAUTHORIZED
    )
    unknown = LoginRequest(email=new_email(), password=PASSWORD)
    assert (await refused(identity.call("login", unknown, TokenPair, ip=None))).code is (
        ErrorCode.UNAUTHORIZED
    )
    async with identity.db.session() as session:
        failed = (
            await session.execute(
                text("SELECT failed_logins FROM identity.users WHERE email = :e"), {"e": email}
            )
        ).scalar_one()
    assert failed == 1


async def test_failed_logins_are_events_without_the_password(identity):
    email = await identity.signed_up()
    await refused(identity.login(email, "wrong-Password-secret-9", ip="198.51.100.40"))
    (failed,) = [
        e for e in await events(identity, "user.login_failed") if e["data"]["email"] == email
    ]
    assert failed["data"] == {
        "email": email,
        "reason": "wrong_password",
        "ip_address": "198.51.100.40",
    }
    assert "wrong-Password-secret-9" not in str(failed)


async def test_a_login_rehashes_a_password_hashed_with_old_parameters(identity):
    from argon2 import PasswordHasher

    email = await identity.signed_up()
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with identity.db.session() as session:
        await session.execute(
            text("UPDATE identity.users SET password_hash = :h WHERE email = :e"),
            {"h": old, "e": email},
        )
    await identity.login(email)
    async with identity.db.session() as session:
        stored = (
            await session.execute(
                text("SELECT password_hash FROM identity.users WHERE email = :e"), {"e": email}
            )
        ).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_tokens_of_the_previous_key_verify_until_it_leaves_the_jwks(identity):
    email = await identity.signed_up()
    old_pair = await identity.login(email)
    old_kid = _kid(old_pair.access_token)
    verifier = TokenVerifier(
        lambda: _jwks(identity), TokenPolicy("saas-identity", "saas-api"), min_refresh_interval=0
    )
    async with identity.db.session() as session:
        new_kid, previous = await identity.deps.keys.rotate(session)
    assert previous == old_kid
    new_pair = await identity.login(email)
    assert _kid(new_pair.access_token) == new_kid
    assert (await verifier.verify(old_pair.access_token)).user_id  # still published
    assert (await verifier.verify(new_pair.access_token)).user_id
    assert {old_kid, new_kid} <= {k["kid"] for k in (await _jwks(identity))["keys"]}
    async with identity.db.session() as session:  # every token of the old key has expired
        await session.execute(
            text(
                "UPDATE identity.signing_keys SET retired_at = now() - interval '2 hours' "
                "WHERE kid = :k"
            ),
            {"k": old_kid},
        )
    identity.deps.keys.forget()  # what its short cache does by itself within seconds
    verifier.forget_keys()
    assert old_kid not in {k["kid"] for k in (await _jwks(identity))["keys"]}
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(old_pair.access_token)
    assert caught.value.reason == "unknown_key"
    identity.process.tokens.forget_keys()  # identity itself refuses it too
    error = await refused(identity.call("users.me", Empty(), User, token=old_pair.access_token))
    assert error.code is ErrorCode.UNAUTHORIZED
    assert await identity.call("users.me", Empty(), User, token=new_pair.access_token)


async def test_replicas_starting_together_create_one_signing_key(identity):
    from saas.identity.keys import KeyRing

    async with identity.db.session() as session:
        await session.execute(text("DELETE FROM identity.signing_keys"))
    rings = [
        KeyRing(identity.db, identity.process.settings.jwt_secret_key, access_ttl=900, leeway=30)
        for _ in range(6)
    ]
    kids = await asyncio.gather(*(ring.ensure_active() for ring in rings))
    assert len(set(kids)) == 1
    async with identity.db.session() as session:
        active = (
            await session.execute(
                text("SELECT count(*) FROM identity.signing_keys WHERE retired_at IS NULL")
            )
        ).scalar_one()
    assert active == 1
    identity.deps.keys.forget()
    identity.process.tokens.forget_keys()


async def _jwks(identity) -> dict:
    return (await identity.call("jwks", Empty(), Jwks)).model_dump()


def _kid(token: str) -> str:
    import jwt

    return jwt.get_unverified_header(token)["kid"]


async def test_the_loop_answers_ping_while_logins_hash(identity):
    email = await identity.signed_up()

    async def logins() -> None:
        await asyncio.gather(
            *(
                identity.call(
                    "login",
                    LoginRequest(email=email, password=PASSWORD),
                    TokenPair,
                    ip=f"198.51.100.{60 + i}",
                )
                for i in range(16)
            )
        )

    async def pings() -> list[float]:
        rtts = []
        for _ in range(20):
            started = time.perf_counter()
            await identity.client.request("identity", "ping", Empty(), PingReply)
            rtts.append(time.perf_counter() - started)
            await asyncio.sleep(0.01)
        return rtts

    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)  # identity's default
    started = time.perf_counter()
    hasher.hash(PASSWORD)
    one_hash = time.perf_counter() - started  # on this machine, now (it slows with the load)
    _, rtts = await asyncio.gather(logins(), pings())
    # 16 logins queue 16 hashes: were they on the loop, a ping would wait behind several of them.
    # Off it, a ping waits for the loop's own turns, well under one hash whatever the load.
    assert statistics.median(rtts) < max(0.01, one_hash / 2), (rtts, one_hash)
