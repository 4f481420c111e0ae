"""Rate limits: token buckets per principal and per IP, and an optional daily quota.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request takes one from
its principal's bucket and one from its IP's bucket, or is refused with how long until both have
one. Buckets are evicted once full and idle, so memory follows the number of active callers, with
a hard bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from core.errors import RateLimitedError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """One family of buckets (e.g. per IP)."""

    def __init__(self, *, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _level(self, key: str, now: float) -> _Bucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self._max_keys:
                self._evict(now)
            b = self._buckets[key] = _Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
        return b

    def wait_for(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token (0 if it has one now)."""
        b = self._level(key, now)
        return 0.0 if b.tokens >= 1 else (1 - b.tokens) / self.rate

    def take(self, key: str, now: float) -> None:
        """Take a token (call only after ``wait_for`` returned 0)."""
        self._buckets[key].tokens -= 1

    def _evict(self, now: float) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self._max_keys:  # still too many: drop the oldest
            del self._buckets[next(iter(self._buckets))]


class RateLimiter:
    """Per-principal and per-IP buckets plus a per-principal daily quota (0 = none)."""

    def __init__(
        self, *, per_principal: tuple[float, float], per_ip: tuple[float, float], daily_quota: int = 0
    ) -> None:
        self._principals = TokenBuckets(rate=per_principal[0], burst=per_principal[1])
        self._ips = TokenBuckets(rate=per_ip[0], burst=per_ip[1])
        self._daily_quota = daily_quota
        self._day = -1
        self._used: dict[str, int] = {}
        self.refused = 0
        self.admitted = 0

    async def admit(self, principal: str, ip: str) -> None:
        """Admit one request or raise RateLimitedError with ``retry_after_s`` (the ``Limiter`` seam)."""
        self.check(principal, ip)

    def check(self, principal: str, ip: str, now: float | None = None) -> None:
        """Admit one request or raise RateLimitedError with ``retry_after_s``."""

        now = time.monotonic() if now is None else now
        wall = time.time()
        day = int(wall // 86400)
        if day != self._day:
            self._day, self._used = day, {}
        if self._daily_quota and self._used.get(principal, 0) >= self._daily_quota:
            self.refused += 1
            raise RateLimitedError(
                f"daily quota of {self._daily_quota} requests used",
                retry_after_s=max(1.0, (day + 1) * 86400 - wall),
            )
        wait = max(self._principals.wait_for(principal, now), self._ips.wait_for(ip, now))
        if wait > 0:
            self.refused += 1
            raise RateLimitedError("rate limit exceeded", retry_after_s=wait)
        self._principals.take(principal, now)
        self._ips.take(ip, now)
        self._used[principal] = self._used.get(principal, 0) + 1
        self.admitted += 1


class Limiter(Protocol):
    """Admits requests per caller and per address (the seam: in this process, or shared by cores)."""

    refused: int
    admitted: int

    async def admit(self, principal: str, ip: str) -> None:
        """Admit one request or raise RateLimitedError with ``retry_after_s``."""
        ...
