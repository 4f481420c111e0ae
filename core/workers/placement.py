"""Which connected worker takes a job: pure choice, no I/O.

Only a worker that serves the job's tier (the model the caller asked for: each tier is one public
model) and has a free slot may take it. Among those:

1. the worker where the job last failed or stalled goes last (it still gets the job if no other can);
2. the least loaded goes first (the smallest share of its slots in use), so no worker queues jobs
   behind its own while another sits idle;
3. between equally loaded workers, the one with the largest *claim* goes first: how long it has been
   since it was last given a job, times its measured pace relative to the fastest (never less than
   ``PACE_FLOOR``; a worker not measured yet counts as fast).

The claim makes the choice a weighted rotation rather than a fixed ranking. Ranking by free slots or
speed alone would send every job of a light load to the same worker and starve the others, e.g. a
real GPU worker beside ``ashao up``'s synthetic one. With the claim, a faster worker is chosen more
often, in proportion, and every worker's claim grows while it waits until it is chosen. A newly
connected worker (never given a job) is chosen first, which also measures it.

Free slots do not weigh in the claim: under a light load every able worker has room, and weighting
by room let a worker that had earned more trust (its slots grow with every answer it delivers) take
ever more of the jobs — one of two equal workers took 999 of 1,000. Room counts through the load
(rule 2) once jobs run at once, and breaks an exact tie of claims.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from core.workers.links import Connection

PACE_FLOOR = 0.25
"""The least weight a measured pace gives, relative to the fastest worker's: a slower worker is chosen
less often, but is still chosen."""


def choose(
    connections: Iterable[Connection],
    tier: str,
    *,
    shunned: str = "",
    continuing: bool = False,
    now: float | None = None,
) -> Connection | None:
    """The worker for a job of ``tier`` (see the module's docstring), or None if none can take it now.
    ``shunned``: where the job last failed or stalled. A ``continuing`` job (one left mid-answer) goes
    only to a worker that continues a partial answer seamlessly."""
    able = [
        c for c in connections if c.free > 0 and tier in c.tiers and (c.continues_prefix or not continuing)
    ]
    if not able:
        return None
    now = time.monotonic() if now is None else now
    fastest = max(c.pace for c in able)

    def key(c: Connection) -> tuple[bool, float, float, int]:
        pace = max(PACE_FLOOR, c.pace / fastest) if c.pace > 0 else 1.0
        claim = (now - c.last_assigned) * pace
        return (c.worker_id == shunned, c.load, -claim, -c.free)

    return min(able, key=key)
