"""Scheduling: per-tier queues fair between callers, and the workers that can take jobs.

Pure bookkeeping, no I/O: the coordinator asks ``next_assignment()`` whenever a job is queued or a
slot frees, and pushes what it gets down the chosen worker's stream.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from core.economics import TIERS_BY_PRIORITY


class TierQueue:
    """FIFO per caller, round-robin between callers, so one caller's burst cannot starve others."""

    def __init__(self) -> None:
        self._by_owner: OrderedDict[str, deque[str]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, owner: str, job_id: str, *, front: bool = False) -> None:
        """Queue ``job_id``; ``front`` puts a retried job before its caller's newer ones."""
        q = self._by_owner.get(owner)
        if q is None:
            q = self._by_owner[owner] = deque()
            if front:
                self._by_owner.move_to_end(owner, last=False)
        if front:
            q.appendleft(job_id)
        else:
            q.append(job_id)
        self._size += 1

    def peek(self) -> str | None:
        """The job ``pop()`` would return, or None."""
        if not self._by_owner:
            return None
        return next(iter(self._by_owner.values()))[0]

    def pop(self) -> str | None:
        """The next job in fair order, or None."""
        if not self._by_owner:
            return None
        owner, q = next(iter(self._by_owner.items()))
        job_id = q.popleft()
        self._size -= 1
        if q:
            self._by_owner.move_to_end(owner)  # this caller goes to the back of the line
        else:
            del self._by_owner[owner]
        return job_id

    def remove(self, owner: str, job_id: str) -> bool:
        """Take ``job_id`` out of the queue (expiry); False if it was not there."""
        q = self._by_owner.get(owner)
        if q is None:
            return False
        try:
            q.remove(job_id)
        except ValueError:
            return False
        self._size -= 1
        if not q:
            del self._by_owner[owner]
        return True

    def __iter__(self) -> Iterator[str]:
        for q in self._by_owner.values():
            yield from q


@dataclass(eq=False, slots=True)
class WorkerSlotView:
    """A connected stream worker as the scheduler sees it."""

    worker_id: str
    tiers: frozenset[str]
    slots: int
    push: Callable[[str], None]
    """Called with a job id when the scheduler hands the worker a job."""
    cancel: Callable[[str, str], None]
    """Called with (job id, reason) when the worker must stop a job."""
    running: set[str] = field(default_factory=set)
    draining: bool = False

    @property
    def free(self) -> int:
        """Free slots."""
        return 0 if self.draining else self.slots - len(self.running)


class Scheduler:
    """The queues of every tier and the stream workers that can be pushed to."""

    def __init__(self) -> None:
        self.queues: dict[str, TierQueue] = {name: TierQueue() for name in TIERS_BY_PRIORITY}
        self.workers: dict[str, WorkerSlotView] = {}

    @property
    def depth(self) -> int:
        """Jobs waiting in every queue."""
        return sum(len(q) for q in self.queues.values())

    def enqueue(self, tier: str, owner: str, job_id: str, *, front: bool = False) -> None:
        """Queue a job on its tier."""
        self.queues[tier].push(owner, job_id, front=front)

    def pop_for(self, tiers: frozenset[str] | None, tier: str = "") -> str | None:
        """The next job for a pull worker: from ``tier`` if given, else the highest-priority tier.

        Image jobs are delivered only over worker streams (their result is a picture, not tokens).
        """
        for name in (tier,) if tier else TIERS_BY_PRIORITY:
            if name == "image" or (tiers is not None and name not in tiers):
                continue
            q = self.queues.get(name)
            if q is not None and len(q):
                return q.pop()
        return None

    def next_assignment(self, avoid: Callable[[str], str] | None = None) -> tuple[WorkerSlotView, str] | None:
        """The next (worker, job) pairing: highest tier first, least-loaded live worker with room.

        ``avoid(job_id)`` names a worker the job should not go back to (it failed or stalled there)
        unless no other worker can take it.
        """
        for name in TIERS_BY_PRIORITY:
            q = self.queues[name]
            if not len(q):
                continue
            shunned = avoid(q.peek() or "") if avoid is not None else ""
            best: WorkerSlotView | None = None
            best_load = 3.0
            for w in self.workers.values():
                if w.free <= 0 or name not in w.tiers:
                    continue
                load = len(w.running) / w.slots + (1.0 if w.worker_id == shunned else 0.0)
                if load < best_load:
                    best, best_load = w, load
            if best is None:
                continue
            job_id = q.pop()
            if job_id is None:
                continue
            return best, job_id
        return None
