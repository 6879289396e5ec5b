"""The rate limiter the gateway asks: Redis when it answers, the configured fallback when not.

Redis is the shared count of every replica. When it cannot be reached (refused, timed out, a
script error), the request is not failed for it: general routes go on under an in-process limit
(`RATE_LIMIT_FALLBACK`: local, or allow, or deny), auth routes are refused with 503
(`RATE_LIMIT_AUTH_FALLBACK`), since a per-replica count is no brake on password guessing. The
outage is logged once when it starts and once when it ends, counted per route class, and shown
in `rate_limit_redis_up`. Meanwhile Redis is tried again by one request every
`retry_interval` seconds, never by every request, so an unreachable Redis costs no latency;
the first answer brings everything back without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from saas.common.logging import get_logger
from saas.common.metrics import Metrics
from saas.common.redact import describe
from saas.gateway.ratelimit.gcra import Decision, LocalLimiter
from saas.gateway.ratelimit.policy import Limit
from saas.gateway.ratelimit.redis import RedisLimiter

log = get_logger(__name__)


@dataclass(frozen=True)
class Verdict:
    """What the limiter says about one request."""

    limits: Sequence[Limit]
    decisions: Sequence[Decision] = field(default_factory=list)  # empty: not counted
    unavailable: bool = False  # refused because limits cannot be checked (503)

    @property
    def allowed(self) -> bool:
        return not self.unavailable and all(d.allowed for d in self.decisions)


class RateLimiter:
    def __init__(
        self,
        redis: RedisLimiter | None,
        *,
        fallback: str = "local",
        auth_fallback: str = "deny",
        timeout: float = 0.25,
        retry_interval: float = 1.0,
        metrics: Metrics | None = None,
        local: LocalLimiter | None = None,
    ) -> None:
        self.redis = redis
        self.local = local or LocalLimiter()
        self.fallback = fallback
        self.auth_fallback = auth_fallback
        self.timeout = timeout
        self.retry_interval = retry_interval
        self._down = False
        self._retry_at = 0.0
        metrics = metrics or Metrics()
        self._rejections = metrics.counter(
            "rate_limit_rejections_total", "Requests refused by a rate limit", ("policy",)
        )
        self._fallbacks = metrics.counter(
            "rate_limit_fallbacks_total",
            "Requests decided without Redis, by route class and what was done",
            ("route_class", "action"),
        )
        self._up = metrics.gauge("rate_limit_redis_up", "1 while Redis answers rate-limit checks")
        self._up.set(1 if redis is not None else 0)

    async def check(self, limits: Sequence[Limit], *, auth: bool = False) -> Verdict:
        decisions = await self._from_redis(limits)
        if decisions is None:
            return self._without_redis(limits, auth)
        verdict = Verdict(limits, decisions)
        self._count_rejections(verdict)
        return verdict

    async def _from_redis(self, limits: Sequence[Limit]) -> list[Decision] | None:
        if self.redis is None:
            return None
        if self._down:
            now = time.monotonic()
            if now < self._retry_at:
                return None
            self._retry_at = now + self.retry_interval  # this request tries; others fall back
        try:
            async with asyncio.timeout(self.timeout):
                decisions = await self.redis.check(limits)
        except (RedisError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                self.redis.reset()  # a connection that went silent is not waited on again
            if not self._down:
                log.warning(
                    "rate limiting falls back: Redis does not answer",
                    error=describe(exc),
                    general=self.fallback,
                    auth=self.auth_fallback,
                )
            self._down, self._retry_at = True, time.monotonic() + self.retry_interval
            self._up.set(0)
            return None
        if self._down:
            log.info("rate limiting is back on Redis")
            self._down = False
            self._up.set(1)
        return decisions

    def _without_redis(self, limits: Sequence[Limit], auth: bool) -> Verdict:
        if self.redis is None:  # no REDIS_URL (development): this process's count is the plan
            action = "local"
        else:
            action = self.auth_fallback if auth else self.fallback
            self._fallbacks.labels("auth" if auth else "general", action).inc()
        if action == "deny":
            return Verdict(limits, unavailable=True)
        if action == "allow":
            return Verdict(limits)
        verdict = Verdict(limits, self.local.check(limits))
        self._count_rejections(verdict)
        return verdict

    def _count_rejections(self, verdict: Verdict) -> None:
        for limit, decision in zip(verdict.limits, verdict.decisions, strict=True):
            if not decision.allowed:
                self._rejections.labels(limit.policy.name).inc()

    @property
    def redis_down(self) -> bool:
        return self._down

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
