"""Which connected worker takes a job: pure choice, no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from core.workers.links import Connection


def choose(
    connections: Iterable[Connection], tier: str, *, shunned: str = "", continuing: bool = False
) -> Connection | None:
    """The worker for a job of ``tier``: one with a free slot that serves the tier, least loaded first,
    then measured fastest, then idle longest. ``shunned`` (where the job last failed or stalled) is
    taken only if no other worker can. A ``continuing`` job (one left mid-answer) goes only to a worker
    that continues a partial answer seamlessly."""
    best: Connection | None = None
    best_key = (2, 2.0, 0.0, 0.0)
    for c in connections:
        if c.free <= 0 or tier not in c.tiers or (continuing and not c.continues_prefix):
            continue
        key = (1 if c.worker_id == shunned else 0, c.load, -c.speed, c.last_assigned)
        if key < best_key:
            best, best_key = c, key
    return best
