"""The cluster's figures as one core reports them: its own, live, plus the other live cores' as they
last wrote them with their heartbeat (a few seconds old at most), plus the jobs waiting in the shared
queue. What ``/api/stats`` and the vitals show is then the network's, whichever core answers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from core.jobs.stats import JobsSnapshot

SUMMED = (
    "active_workers",
    "live_workers",
    "slots",
    "busy_slots",
    "queue_depth",
    "stalled_queued",
    "jobs_streaming",
    "tokens_per_sec",
    "recent_outcomes",
    "recent_failures",
)
"""The figures that add up across cores."""


@dataclass(slots=True)
class ClusterView:
    """Figures of the other live cores, and of the shared queue."""

    others: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each summed figure, over the other live cores."""
    oldest_wait_s: float = 0.0
    waiting_in_queue: int = 0
    """Jobs published on the shared queue that no core has pulled yet."""
    jobs_completed: int | None = None
    """Jobs done in the whole network (read from the store now and then); None until read."""
    completed_here_since: int = 0
    """This core's own count when ``jobs_completed`` was read."""
    served: frozenset[str] = frozenset()
    """Tiers a worker of another live core takes jobs of."""
    read: bool = False
    """Whether the other cores' reports were read at least once."""

    @staticmethod
    def report(s: JobsSnapshot, served: list[str]) -> str:
        """What this core writes with its heartbeat (its figures, and the tiers its workers serve)."""
        return orjson.dumps(
            {**{k: getattr(s, k) for k in SUMMED}, "oldest_wait_s": s.oldest_wait_s, "served": served}
        ).decode()

    def take(self, reports: list[str]) -> None:
        """The other live cores' reports (unreadable ones count as empty)."""
        others: dict[str, float] = dict.fromkeys(SUMMED, 0)
        oldest = 0.0
        served: set[str] = set()
        for text in reports:
            try:
                r = orjson.loads(text) if text else {}
            except orjson.JSONDecodeError:
                continue
            for k in SUMMED:
                v = r.get(k, 0)
                others[k] += float(v) if isinstance(v, int | float) else 0.0
            w = r.get("oldest_wait_s", 0)
            oldest = max(oldest, float(w) if isinstance(w, int | float) else 0.0)
            tiers = r.get("served", [])
            if isinstance(tiers, list):
                served.update(t for t in tiers if isinstance(t, str))
        self.others, self.oldest_wait_s, self.served = others, oldest, frozenset(served)
        self.read = True

    def merged(self, own: JobsSnapshot) -> JobsSnapshot:
        """``own`` with the others' figures added."""
        summed = {k: type(getattr(own, k))(getattr(own, k) + self.others.get(k, 0)) for k in SUMMED}
        summed["queue_depth"] += self.waiting_in_queue
        completed = own.jobs_completed
        if self.jobs_completed is not None:
            completed = self.jobs_completed + max(0, own.jobs_completed - self.completed_here_since)
        return dataclasses.replace(
            own,
            **summed,
            oldest_wait_s=max(own.oldest_wait_s, self.oldest_wait_s),
            jobs_completed=completed,
        )
