"""The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-09), as pure functions.

    RateLimit-Policy: "user";q=600;w=60, "tenant";q=3000;w=60
    RateLimit: "user";r=599;t=1, "tenant";r=2999;t=1

`RateLimit-Policy` states each policy the request counted against (its quota `q` over a window
of `w` seconds); `RateLimit` the live state: `r` requests remaining and `t` seconds until the
quota is whole again. A refused request also gets `Retry-After`: whole seconds after which the
same request would be allowed (rounded up, so waiting exactly that long is enough).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from saas.gateway.ratelimit.gcra import Decision, retry_after_seconds
from saas.gateway.ratelimit.policy import Limit


def policy_field(limits: Sequence[Limit]) -> str:
    return ", ".join(
        f'"{limit.policy.name}";q={limit.policy.rate.limit};w={math.ceil(limit.policy.rate.period)}'
        for limit in limits
    )


def state_field(limits: Sequence[Limit], decisions: Sequence[Decision]) -> str:
    return ", ".join(
        f'"{limit.policy.name}";r={max(d.remaining, 0)};t={math.ceil(max(d.reset, 0.0))}'
        for limit, d in zip(limits, decisions, strict=True)
    )


def rate_limit_headers(
    limits: Sequence[Limit], decisions: Sequence[Decision]
) -> list[tuple[bytes, bytes]]:
    """The fields for a response; with `Retry-After` when the request was refused."""
    if not decisions:
        return []
    headers = [
        (b"ratelimit-policy", policy_field(limits).encode()),
        (b"ratelimit", state_field(limits, decisions).encode()),
    ]
    if not all(d.allowed for d in decisions):
        headers.append((b"retry-after", str(retry_after_seconds(decisions)).encode()))
    return headers
