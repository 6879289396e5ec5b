"""The GCRA script in a real Redis (Valkey) decides as the Python reference does, counts nothing
for a refused request, and leaves no key behind once a limit is whole again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from saas.gateway.ratelimit.gcra import LocalLimiter
from saas.gateway.ratelimit.policy import Limit, Policy, Rate
from saas.gateway.ratelimit.redis import RedisLimiter


@pytest.fixture
async def limiter(stack):
    limiter = RedisLimiter.from_url(stack.redis_url)
    yield limiter
    await limiter.aclose()


def limit(rate: Rate, name: str = "test") -> Limit:
    return Limit(Policy(name, rate), uuid.uuid4().hex)


async def test_a_burst_counts_down_like_the_reference_then_is_refused(limiter):
    five = limit(Rate(5, 60))
    reference = LocalLimiter(clock=lambda: 0.0)
    for _ in range(7):
        (got,) = await limiter.check([five])
        (expected,) = reference.check([five])
        assert (got.allowed, got.remaining) == (expected.allowed, expected.remaining)
        assert got.reset == pytest.approx(expected.reset, abs=0.5)
        assert got.retry_after == pytest.approx(expected.retry_after, abs=0.5)


async def test_a_request_refused_by_one_limit_counts_against_none(limiter):
    strict, loose = limit(Rate(1, 60)), limit(Rate(100, 60))
    assert [d.allowed for d in await limiter.check([strict, loose])] == [True, True]
    assert [d.allowed for d in await limiter.check([strict, loose])] == [False, True]
    (alone,) = await limiter.check([loose])
    assert alone.remaining == 98


async def test_the_refusal_ends_when_retry_after_says(limiter):
    fast = limit(Rate(2, 0.4))  # a share back every 0.2 s
    await limiter.check([fast])
    await limiter.check([fast])
    (refused,) = await limiter.check([fast])
    assert not refused.allowed and 0 < refused.retry_after <= 0.2
    await asyncio.sleep(refused.retry_after + 0.01)
    (again,) = await limiter.check([fast])
    assert again.allowed


async def test_a_key_lives_only_until_its_limit_is_whole_again(limiter, stack):
    one = limit(Rate(10, 60))
    await limiter.check([one])
    redis = Redis.from_url(stack.redis_url)
    try:
        ttl = await redis.pttl(one.key)
        assert 5_000 < ttl <= 6_000  # one request's share: 6 s
        stored = await redis.get(one.key)
        assert stored.isdigit()  # microseconds, written without an exponent
    finally:
        await redis.aclose()
