"""What the core has seen a worker deliver, and how many jobs it trusts it with at once.

A worker's claimed slots are only a ceiling. It starts on probation with a few jobs at once; every
answer it delivers (a completion with tokens the core relayed) earns it one more, up to its claim;
every failure on its side (a job it gave up, lost, stalled on, or completed empty) halves what it has
earned. So a worker that claims a thousand slots gets a thousand jobs only after delivering, and a
worker that stops delivering loses its share quickly.

The core also measures two speeds: ``speed``, the tokens per second it relays from the worker in all
(what the operator's list shows), and ``pace``, the tokens per second of one of its answers. Placement
compares paces: a worker's throughput grows with the jobs it is given, so comparing throughputs would
hand ever more jobs to whichever worker happened to get more at first; a pace does not depend on that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

PROBATION_SLOTS = 2
"""Jobs a new (or newly restarted) worker is trusted with at once."""
SPEED_HALF_LIFE_S = 10.0
PACE_WEIGHT = 0.3
"""Weight of the latest answer in ``pace`` (the rest is the earlier answers')."""


@dataclass(slots=True)
class Standing:
    """One worker's record since the core started."""

    earned: int = PROBATION_SLOTS
    delivered: int = 0
    """Answers delivered."""
    failed: int = 0
    """Jobs lost on its side."""
    tokens: int = 0
    """Tokens relayed from it."""
    speed: float = 0.0
    """Tokens per second relayed from it, smoothed."""
    pace: float = 0.0
    """Tokens per second of one of its answers, from assignment to completion, smoothed over its recent
    answers (0: none measured yet)."""
    _mark: float = 0.0
    _since_mark: int = 0

    def trusted(self, claimed: int) -> int:
        """Jobs it may run at once now."""
        return max(1, min(claimed, self.earned))

    def delivered_answer(self, claimed: int) -> None:
        """It completed a job with tokens: one more slot, up to its claim."""
        self.delivered += 1
        self.earned = min(max(claimed, 1), self.earned + 1)

    def answered(self, tokens: int, seconds: float) -> None:
        """One of its answers, ``tokens`` long, took ``seconds`` from assignment to completion."""
        if tokens <= 0 or seconds <= 0:
            return
        rate = tokens / seconds
        self.pace = rate if not self.pace else PACE_WEIGHT * rate + (1 - PACE_WEIGHT) * self.pace

    def failed_job(self) -> None:
        """A job was lost on its side: half of what it earned."""
        self.failed += 1
        self.earned = max(1, self.earned // 2)

    def relayed(self, tokens: int, now: float | None = None) -> None:
        """Tokens of it were relayed to callers."""
        now = time.monotonic() if now is None else now
        self.tokens += tokens
        if not self._mark:
            self._mark = now  # the window starts after these
            return
        self._since_mark += tokens

        elapsed = now - self._mark
        if elapsed >= 1.0:
            rate = self._since_mark / elapsed
            weight = 0.5 ** (elapsed / SPEED_HALF_LIFE_S)
            self.speed = rate if not self.speed else weight * self.speed + (1 - weight) * rate
            self._mark, self._since_mark = now, 0
