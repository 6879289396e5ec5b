"""GCRA (the generic cell rate algorithm) as pure arithmetic, and the in-process limiter on it.

GCRA keeps one number per limit: the theoretical arrival time (TAT), when the limit would be
whole again if no more requests came. A request moves it one interval (period / limit) later;
it is refused when that would put the TAT more than a period ahead of now. So `limit` requests
may come at once, and after that one per interval: a token bucket without a refill loop, stored
in one key. The Redis script (`saas.gateway.ratelimit.redis`) does the same in integer
microseconds on the server's clock; this module is the reference both are tested against.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from saas.gateway.ratelimit.policy import Limit, Rate

_EPSILON = 1e-9


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int  # requests still allowed right now, after this one
    reset: float  # seconds until the quota is whole again
    retry_after: float = 0.0  # seconds until a request would be allowed (0 when it was)


def gcra(tat: float | None, now: float, rate: Rate) -> tuple[Decision, float]:
    """The decision for one request at `now`, and the TAT to store if the request goes ahead."""
    tat = now if tat is None or tat < now else tat
    new_tat = tat + rate.interval
    wait = new_tat - rate.period - now
    if wait > _EPSILON:
        return Decision(False, 0, tat - now, wait), tat
    remaining = math.floor((rate.period - (new_tat - now)) / rate.interval + _EPSILON)
    return Decision(True, remaining, new_tat - now), new_tat


def allowed(decisions: Sequence[Decision]) -> bool:
    return all(d.allowed for d in decisions)


def retry_after_seconds(decisions: Sequence[Decision]) -> int:
    """Whole seconds after which every refusing limit allows a request again (never 0)."""
    return max(1, max((math.ceil(d.retry_after) for d in decisions if not d.allowed), default=1))


class LocalLimiter:
    """GCRA in this process's memory: for development without Redis, and while Redis is away.
    Each replica counts alone, so a fleet of N lets N times the limit through."""

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._tats: dict[str, float] = {}

    def check(self, limits: Sequence[Limit]) -> list[Decision]:
        now = self.clock()
        results = [gcra(self._tats.get(limit.key), now, limit.policy.rate) for limit in limits]
        decisions = [decision for decision, _ in results]
        if allowed(decisions):  # refused requests count against nothing
            if len(self._tats) + len(limits) > self.max_keys:
                self._forget_whole(now)
            for limit, (_, tat) in zip(limits, results, strict=True):
                self._tats[limit.key] = tat
        return decisions

    def _forget_whole(self, now: float) -> None:
        """Drop limits that are whole again (they read the same as absent); if that is not
        enough, drop the oldest half: bounded memory matters more than a few keys' counts."""
        self._tats = {k: t for k, t in self._tats.items() if t > now}
        if len(self._tats) > self.max_keys // 2:
            keep = list(self._tats.items())[len(self._tats) // 2 :]
            self._tats = dict(keep)
