"""Which connected worker takes a job: pure choice, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from core.workers.links import Connection


def choose(connections: Iterable[Connection], tier: str, *, shunned: str = "") -> Connection | None:
    """The worker for a job of ``tier``: one with a free slot that serves the tier, least loaded first,
    then idle longest. ``shunned`` (where the job last failed or stalled) is taken only if no other
    worker can."""
    best: Connection | None = None
    best_key = (2, 2.0, 0.0)
    for c in connections:
        if c.free <= 0 or tier not in c.tiers:
            continue
        key = (1 if c.worker_id == shunned else 0, c.load, c.last_assigned)
        if key < best_key:
            best, best_key = c, key
    return best
