"""Live figures of the job system: throughput, and the snapshot vitals and /api/stats read."""

from __future__ import annotations

import time
from dataclasses import dataclass


class TokenMeter:
    """Tokens per second over the last ``window`` whole seconds (one bucket per second)."""

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._buckets = [0] * (window + 1)
        self._stamps = [-1] * (window + 1)
        self.total = 0
        """Every token counted since start."""

    def add(self, n: int, now: float | None = None) -> None:
        """Count ``n`` tokens relayed now."""
        sec = int(time.monotonic() if now is None else now)
        i = sec % len(self._buckets)
        if self._stamps[i] != sec:
            self._stamps[i] = sec
            self._buckets[i] = 0
        self._buckets[i] += n
        self.total += n

    def rate(self, now: float | None = None) -> float:
        """Average tokens/s over the last whole seconds (the current partial second excluded)."""
        sec = int(time.monotonic() if now is None else now)
        total = 0
        for i, stamp in enumerate(self._stamps):
            if sec - self._window <= stamp < sec:
                total += self._buckets[i]
        return total / self._window


@dataclass(frozen=True, slots=True)
class JobsSnapshot:
    """The job system's figures at one moment, as vitals and /api/stats read them."""

    active_workers: int
    """Workers holding a stream, or seen on the pull path recently."""
    live_workers: int
    """Workers holding a stream."""
    slots: int
    """Slots of the workers holding a stream."""
    busy_slots: int
    queue_depth: int
    oldest_wait_s: float
    """How long the longest-waiting queued job has waited."""
    stalled_queued: int
    """Queued jobs waiting more than 30 s."""
    jobs_streaming: int
    jobs_completed: int
    tokens_per_sec: float
    recent_outcomes: int
    """How many of the most recent finished jobs are counted below."""
    recent_failures: int
    """Of those, how many failed or expired."""
    last_send_at: float
    """Monotonic time of the last send (0: none yet)."""


@dataclass(frozen=True, slots=True)
class TierLoad:
    """One tier's load at one moment."""

    tier: str
    queued: int
    """Jobs waiting for a worker."""
    running: int
    """Jobs a worker holds (assigned or streaming)."""
    oldest_wait_s: float
    """How long its longest-waiting queued job has waited."""
    workers: int
    """Connected workers that serve it and take jobs."""
    free_slots: int
    """Free slots among those workers."""


@dataclass(frozen=True, slots=True)
class Load:
    """Where the work is at one moment: per tier, the workers' slots, and who is following answers."""

    tiers: list[TierLoad]
    """Highest priority first."""
    slots: int
    """Jobs the connected workers are given at once (their trusted capacity)."""
    busy_slots: int
    """Of those, running a job now."""
    followers: int
    """Listeners on the event logs of live jobs (streams, SSE clients through the facade, waiting calls)."""
