"""The password policy and argon2id hashing: what a new password must be, and how it is kept."""

from __future__ import annotations

import asyncio
import time

import pytest

from saas.common.errors import ErrorCode, ServiceError
from saas.identity.passwords import Passwords, check_password, password_problems

FAST = {"time_cost": 1, "memory_cost": 8 * 1024, "parallelism": 1}


def test_a_long_uncommon_password_is_accepted():
    assert password_problems("plum-orbit-castle-91", min_length=12) == []


def test_a_short_password_names_the_minimum():
    assert password_problems("Abc123!x", min_length=12) == ["must be at least 12 characters long"]


@pytest.mark.parametrize("password", ["qwerty123456", "QWERTY123456", "1qaz2wsx3edc", "Password"])
def test_common_passwords_are_refused_whatever_their_case(password):
    problems = password_problems(password, min_length=8)
    assert any("commonly used" in p for p in problems)


def test_the_email_itself_is_refused_as_a_password():
    assert password_problems(" Ada@Example.com ", min_length=8, email="ada@example.com") == [
        "must not be your email address"
    ]


def test_a_password_over_256_characters_is_refused():
    assert "at most 256" in password_problems("x" * 257, min_length=12)[0]


def test_policy_errors_are_field_level_validation_errors():
    with pytest.raises(ServiceError) as caught:
        check_password("short", min_length=12, field="new_password")
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert caught.value.details == {
        "errors": [{"loc": ["new_password"], "msg": "must be at least 12 characters long"}]
    }


async def test_hashes_are_argon2id_and_verify_only_the_right_password():
    passwords = Passwords(**FAST)
    digest = await passwords.hash("plum-orbit-castle-91")
    assert digest.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert await passwords.verify(digest, "plum-orbit-castle-91")
    assert not await passwords.verify(digest, "plum-orbit-castle-92")
    assert not await passwords.verify("not a hash", "plum-orbit-castle-91")
    passwords.close()


async def test_a_hash_made_with_other_parameters_needs_rehashing():
    old = Passwords(**FAST)
    new = Passwords(**{**FAST, "time_cost": 2})
    digest = await old.hash("plum-orbit-castle-91")
    assert new.needs_rehash(digest) and not old.needs_rehash(digest)
    old.close()
    new.close()


async def test_hashing_runs_off_the_event_loop():
    passwords = Passwords(time_cost=2, memory_cost=19456, parallelism=1, threads=2)
    started = time.perf_counter()
    digest = await passwords.hash("plum-orbit-castle-91")
    one_hash = time.perf_counter() - started  # on this machine, now (it slows with the load)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.002)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await asyncio.gather(*(passwords.verify(digest, "wrong password here") for _ in range(8)))
    task.cancel()
    gaps = sorted(b - a for a, b in zip(ticks, ticks[1:], strict=False))
    # On the loop, each verification would stall it for a whole hash (tens of ms); off it, the
    # ticker keeps its 2 ms pace but for what the OS scheduler takes while both cores hash.
    bound = max(0.015, one_hash / 2)
    assert len(gaps) > 20 and gaps[int(len(gaps) * 0.9)] < bound, (gaps[-5:], one_hash)
    passwords.close()


async def test_a_full_queue_turns_logins_away_instead_of_piling_up():
    passwords = Passwords(time_cost=2, memory_cost=19456, parallelism=1, threads=1, max_waiting=2)
    digest = await passwords.hash("plum-orbit-castle-91")
    results = await asyncio.gather(
        *(passwords.verify(digest, "x") for _ in range(6)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, ServiceError)]
    assert len(refused) == 3 and refused[0].code is ErrorCode.SERVICE_UNAVAILABLE
    passwords.close()
