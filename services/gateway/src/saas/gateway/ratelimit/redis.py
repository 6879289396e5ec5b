"""GCRA in Redis: every limit of a request checked and counted in one atomic script call.

One round trip per request (EVALSHA; EVAL when the server has not seen the script yet). The time
is Redis's own (`TIME`), so every gateway replica counts on one clock whatever theirs say. All
arithmetic is in integer microseconds; a TAT is stored as a decimal string with no exponent (Lua
would print a large number as 1.7e+15 and lose its digits), and each key expires when its limit
is whole again, so idle clients cost no memory.

A request is allowed only if every one of its keys allows it; only then are they all moved on,
so a refused request counts against nothing. The keys of one request may live on different
Redis Cluster slots: this needs a single Redis (or a primary with replicas), not a cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.exceptions import ResponseError

from saas.gateway.ratelimit.gcra import Decision
from saas.gateway.ratelimit.policy import Limit, Policy
from saas.gateway.ratelimit.resp import RespConnection

MICRO = 1_000_000

# KEYS[i]: the key of limit i. ARGV[2i-1], ARGV[2i]: its interval (microseconds) and its limit.
# Returns {allowed, then per key: remaining, reset (us), retry after (us)}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local allowed = 1
local tats = {}
local out = {0}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local period = interval * tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - period - now
  if wait > 0 then
    allowed = 0
    tats[i] = false
    out[#out + 1] = 0
    out[#out + 1] = tat - now
    out[#out + 1] = wait
  else
    tats[i] = new_tat
    out[#out + 1] = math.floor((period - (new_tat - now)) / interval)
    out[#out + 1] = new_tat - now
    out[#out + 1] = 0
  end
end
if allowed == 1 then
  for i = 1, n do
    local ttl = math.ceil((tats[i] - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
  end
end
out[1] = allowed
return out
"""


class RedisLimiter:
    """The script's calls over one pipelined connection (`RespConnection`): EVALSHA with the
    parts that do not change (the script's hash, each policy's interval and limit) packed once."""

    def __init__(self, connection: RespConnection) -> None:
        self.connection = connection
        self._sha = hashlib.sha1(GCRA_SCRIPT.encode()).hexdigest().encode()
        self._heads: dict[int, bytes] = {}
        self._args: dict[Policy, bytes] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisLimiter:
        return cls(RespConnection(url))

    async def check(self, limits: Sequence[Limit]) -> list[Decision]:
        keys = b"".join(_bulk(limit.key.encode()) for limit in limits)
        args = b"".join(self._policy_args(limit.policy) for limit in limits)
        try:
            reply = await self.connection.call(self._head(len(limits)) + keys + args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            # Not in this server's script cache (a new or flushed server): EVAL runs it and
            # caches it, so the next EVALSHA finds it.
            head = self._head(len(limits), script=GCRA_SCRIPT.encode())
            reply = await self.connection.call(head + keys + args)
        decisions = []
        for i in range(len(limits)):
            remaining, reset, wait = reply[1 + 3 * i : 4 + 3 * i]
            decisions.append(Decision(wait <= 0, remaining, reset / MICRO, max(wait, 0) / MICRO))
        return decisions

    def _head(self, keys: int, script: bytes | None = None) -> bytes:
        """`EVALSHA <sha> <keys>` (or `EVAL <script> <keys>`) as the start of a RESP array."""
        if script is not None:
            return (
                b"*%d\r\n" % (3 + 3 * keys) + _bulk(b"EVAL") + _bulk(script) + _bulk(b"%d" % keys)
            )
        head = self._heads.get(keys)
        if head is None:
            head = b"*%d\r\n" % (3 + 3 * keys) + _bulk(b"EVALSHA") + _bulk(self._sha)
            head = self._heads[keys] = head + _bulk(b"%d" % keys)
        return head

    def _policy_args(self, policy: Policy) -> bytes:
        args = self._args.get(policy)
        if args is None:
            interval = round(policy.rate.interval * MICRO)
            args = self._args[policy] = _bulk(b"%d" % interval) + _bulk(b"%d" % policy.rate.limit)
        return args

    def reset(self) -> None:
        """Drop the connection: one that did not answer in time may never answer."""
        self.connection.reset()

    async def aclose(self) -> None:
        await self.connection.aclose()


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)
