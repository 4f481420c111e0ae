"""Live throughput measurement."""

from __future__ import annotations

import time


class TokenMeter:
    """Tokens per second over the last ``window`` whole seconds (one bucket per second)."""

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._buckets = [0] * (window + 1)
        self._stamps = [-1] * (window + 1)

    def add(self, n: int, now: float | None = None) -> None:
        """Count ``n`` tokens relayed now."""
        sec = int(time.monotonic() if now is None else now)
        i = sec % len(self._buckets)
        if self._stamps[i] != sec:
            self._stamps[i] = sec
            self._buckets[i] = 0
        self._buckets[i] += n

    def rate(self, now: float | None = None) -> float:
        """Average tokens/s over the last whole seconds (the current partial second excluded)."""
        sec = int(time.monotonic() if now is None else now)
        total = 0
        for i, stamp in enumerate(self._stamps):
            if sec - self._window <= stamp < sec:
                total += self._buckets[i]
        return total / self._window
