"""Rate limits several cores share, in Redis: a caller cannot multiply its limit by the number of
cores (or facades) it spreads its requests over.

Each limit is a generic cell rate algorithm (the token bucket's exact equivalent, one timestamp per key):
a key's theoretical arrival time advances by ``1/rate`` per admitted request, and a request is refused
while that time is more than ``(burst - 1)/rate`` ahead of now. The per-caller and per-address checks
run in one Lua script (one round trip, atomic: both are charged or neither), and so does the daily quota.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from redis.exceptions import RedisError

from core.errors import RateLimitedError
from core.identity.ratelimit import RateLimiter

log = logging.getLogger("ashao.core.cluster")

_SCRIPT = """
local now = tonumber(ARGV[1])
local wait = 0
for i = 1, 2 do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local early = tat - tolerance - now
  if early > wait then wait = early end
end
local quota = tonumber(ARGV[6])
if quota > 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or 0)
  if used >= quota then return -1 end
end
if wait > 0 then return wait end
for i = 1, 2 do
  local interval = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  redis.call('SET', KEYS[i], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
end
if quota > 0 then
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], 90000)
end
return 0
"""


class SharedRateLimiter:
    """Per-caller and per-address limits (and a daily quota per caller) every core applies alike.

    While Redis cannot be reached, each core applies the same limits on its own (an in-process
    limiter): a caller may then get up to one limit per core, but nobody is refused because Redis is
    down, and nobody is let through unlimited.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str,
        per_principal: tuple[float, float],
        per_ip: tuple[float, float],
        daily_quota: int = 0,
    ) -> None:
        self._redis = client
        self._name = name
        self._per_principal = per_principal
        self._per_ip = per_ip
        self._daily_quota = daily_quota
        self._script = client.register_script(_SCRIPT)
        self._local = RateLimiter(per_principal=per_principal, per_ip=per_ip, daily_quota=daily_quota)
        self._down = False
        self.refused = 0
        self.admitted = 0

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        name: str,
        per_principal: tuple[float, float],
        per_ip: tuple[float, float],
        daily_quota: int = 0,
        timeout_s: float = 0.5,
    ) -> SharedRateLimiter:
        """A limiter on the Redis at ``url`` (connected on first use; every call bounded by ``timeout_s``)."""
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, name=name, per_principal=per_principal, per_ip=per_ip, daily_quota=daily_quota)

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()

    async def admit(self, principal: str, ip: str) -> None:
        """Admit one request or raise RateLimitedError with ``retry_after_s``."""
        wall = time.time()
        day = int(wall // 86400)
        args: list[float | int] = [wall * 1000]
        for rate, burst in (self._per_principal, self._per_ip):
            interval = 1000.0 / rate
            args += [interval, (burst - 1) * interval]
        args.append(self._daily_quota)
        keys = [
            f"{self._name}:p:{principal}",
            f"{self._name}:ip:{ip}",
            f"{self._name}:d:{day}:{principal}",
        ]
        try:
            wait = float(await self._script(keys=keys, args=args))
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._down:
                log.warning("shared rate limits unreachable (%s): limiting in this process meanwhile", exc)
                self._down = True
            try:
                self._local.check(principal, ip)
            except RateLimitedError:
                self.refused += 1
                raise
            self.admitted += 1
            return
        if self._down:
            log.info("shared rate limits reachable again")
            self._down = False
        if wait < 0:
            self.refused += 1
            raise RateLimitedError(
                f"daily quota of {self._daily_quota} requests used",
                retry_after_s=max(1.0, (day + 1) * 86400 - wall),
            )
        if wait > 0:
            self.refused += 1
            raise RateLimitedError("rate limit exceeded", retry_after_s=wait / 1000)
        self.admitted += 1
