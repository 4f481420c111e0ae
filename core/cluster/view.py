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
    done_by_core: dict[str, int] = dataclasses.field(default_factory=dict)
    """Each other core's count of jobs done, as it last reported it (kept for a core that stopped
    reporting until the store is read again: its jobs are in that count then)."""
    done_at_read: dict[str, int] = dataclasses.field(default_factory=dict)
    """Each other core's count when ``jobs_completed`` was read (or when it was first seen after)."""
    served: frozenset[str] = frozenset()
    """Tiers a worker of another live core takes jobs of."""
    read: bool = False
    """Whether the other cores' reports were read at least once."""

    @staticmethod
    def report(s: JobsSnapshot, served: list[str], core_id: str = "") -> str:
        """What this core writes with its heartbeat (its figures, its count of jobs done and the tiers its
        workers serve)."""
        return orjson.dumps(
            {
                **{k: getattr(s, k) for k in SUMMED},
                "oldest_wait_s": s.oldest_wait_s,
                "served": served,
                "core": core_id,
                "jobs_completed": s.jobs_completed,
            }
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
            core, done = r.get("core"), r.get("jobs_completed")
            if isinstance(core, str) and core and isinstance(done, int) and not isinstance(done, bool):
                self.done_at_read.setdefault(core, done)
                self.done_by_core[core] = max(done, self.done_by_core.get(core, done))
        self.others, self.oldest_wait_s, self.served = others, oldest, frozenset(served)
        self.read = True

    def counted(self, jobs_completed: int, own_completed: int) -> None:
        """The store's count of jobs done was read (``own_completed``: this core's count then): the
        other cores' counts start again from what they report now."""
        self.jobs_completed = jobs_completed
        self.completed_here_since = own_completed
        self.done_at_read = dict(self.done_by_core)

    def merged(self, own: JobsSnapshot) -> JobsSnapshot:
        """``own`` with the others' figures added."""
        summed = {k: type(getattr(own, k))(getattr(own, k) + self.others.get(k, 0)) for k in SUMMED}
        summed["queue_depth"] += self.waiting_in_queue
        completed = own.jobs_completed
        if self.jobs_completed is not None:
            # the store's count, plus what each core (this one and the others, as they report) has done
            # since it was read: a job done on any core shows on every core within a heartbeat
            since = max(0, own.jobs_completed - self.completed_here_since)
            for core, done in self.done_by_core.items():
                since += max(0, done - self.done_at_read.get(core, done))
            completed = self.jobs_completed + since
        return dataclasses.replace(
            own,
            **summed,
            oldest_wait_s=max(own.oldest_wait_s, self.oldest_wait_s),
            jobs_completed=completed,
        )
