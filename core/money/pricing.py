"""The relay's posted price, computed from live measurements by the rule in core/economics.py."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from core import economics


@dataclass(frozen=True, slots=True)
class Price:
    """The posted per-message price and its five slices (credits)."""

    price: int
    variable_cost: float
    overhead: float
    improvement: float
    reserve: float
    buffer: float
    sealed: bool
    """False until enough messages were measured; until then the cap stands in for the overhead."""
    mean_output_tokens: float
    messages_per_week: float


class PriceBoard:
    """Measures relay messages and posts the price."""

    WINDOW_S = 3600.0
    MIN_SAMPLES = 10

    def __init__(self, *, default_output_tokens: int) -> None:
        self._tokens: deque[int] = deque(maxlen=500)
        self._times: deque[float] = deque(maxlen=100_000)
        self._default_tokens = default_output_tokens

    def observe(self, output_tokens: int, now: float | None = None) -> None:
        """A relay message was served."""
        self._tokens.append(output_tokens)
        self._times.append(time.monotonic() if now is None else now)

    def current(self, now: float | None = None) -> Price:
        """The price now."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.WINDOW_S:
            self._times.popleft()
        sealed = len(self._tokens) >= self.MIN_SAMPLES
        mean = sum(self._tokens) / len(self._tokens) if self._tokens else float(self._default_tokens)
        per_week = len(self._times) * (7 * 86400 / self.WINDOW_S)
        variable = mean * economics.RELAY_CREDITS_PER_1K_TOKENS / 1000
        overhead = min(economics.OVERHEAD_CAP_CREDITS, economics.OPERATING_COST_PER_WEEK / max(1.0, per_week))
        base = variable + overhead
        improvement = base * economics.IMPROVEMENT_BPS / economics.BPS
        reserve = base * economics.RESERVE_BPS / economics.BPS
        buffer = base * economics.BUFFER_BPS / economics.BPS
        total = max(1, math.ceil(base + improvement + reserve + buffer))
        return Price(total, variable, overhead, improvement, reserve, buffer, sealed, mean, per_week)
