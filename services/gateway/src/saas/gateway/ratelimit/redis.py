"""GCRA in Redis: every limit of a request checked and counted in one atomic script call.

One round trip per request (EVALSHA; the script is loaded once per Redis server). The time is
Redis's own (`TIME`), so every gateway replica counts on one clock whatever theirs say. All
arithmetic is in integer microseconds; a TAT is stored as a decimal string with no exponent (Lua
would print a large number as 1.7e+15 and lose its digits), and each key expires when its limit
is whole again, so idle clients cost no memory.

A request is allowed only if every one of its keys allows it; only then are they all moved on,
so a refused request counts against nothing. The keys of one request may live on different
Redis Cluster slots: this needs a single Redis (or a primary with replicas), not a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from saas.gateway.ratelimit.gcra import Decision
from saas.gateway.ratelimit.policy import Limit

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
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._script = redis.register_script(GCRA_SCRIPT)

    async def check(self, limits: Sequence[Limit]) -> list[Decision]:
        args: list[int] = []
        for limit in limits:
            args += [round(limit.policy.rate.interval * MICRO), limit.policy.rate.limit]
        reply = await self._script(keys=[limit.key for limit in limits], args=args)
        decisions = []
        for i in range(len(limits)):
            remaining, reset, wait = (int(v) for v in reply[1 + 3 * i : 4 + 3 * i])
            decisions.append(Decision(wait <= 0, remaining, reset / MICRO, max(wait, 0) / MICRO))
        return decisions

    async def aclose(self) -> None:
        await self.redis.aclose()
