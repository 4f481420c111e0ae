"""The job queue seam: per-tier queues, FIFO within a caller and fair between callers.

``JobQueue`` is what dispatch asks of a queue; ``LocalQueues`` keeps them in this process. Pure
bookkeeping, no I/O: a distributed implementation keeps a local prefetch of jobs it pulled (no more
than its connected workers have free slots) behind the same calls.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import Protocol

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


class JobQueue(Protocol):
    """Queued job ids per tier."""

    shared: bool
    """Whether several cores take jobs from this queue (a new job is then not kept by the core that
    admitted it: it goes on the shared queue, and the core whose workers have room takes it)."""

    def push(self, tier: str, owner: str, job_id: str, *, front: bool = False) -> None:
        """Queue a job on its tier (``front``: a retried job goes before its caller's newer ones)."""
        ...

    def peek(self, tier: str) -> str | None:
        """The job ``pop(tier)`` would return, or None."""
        ...

    def pop(self, tier: str) -> str | None:
        """The next job of ``tier`` in fair order, or None."""
        ...

    def remove(self, tier: str, owner: str, job_id: str) -> bool:
        """Take a queued job out (cancelled, expired); False if it was not queued."""
        ...

    def depth(self, tier: str | None = None) -> int:
        """Jobs waiting on ``tier``, or on every tier."""
        ...

    def adopt(self, tier: str, owner: str, job_id: str) -> None:
        """A job this core took from the shared queue joins the line it hands out from."""
        ...

    def ended(self, job_id: str) -> None:
        """A job this core ran (or took) ended: the shared queue may forget it."""
        ...


class LocalQueues:
    """One TierQueue per tier, in this process."""

    shared = False

    def __init__(self) -> None:
        self._queues: dict[str, TierQueue] = {name: TierQueue() for name in TIERS_BY_PRIORITY}

    def push(self, tier: str, owner: str, job_id: str, *, front: bool = False) -> None:
        """Queue a job on its tier."""
        self._queues[tier].push(owner, job_id, front=front)

    def peek(self, tier: str) -> str | None:
        """The next job of ``tier``, left queued."""
        return self._queues[tier].peek()

    def pop(self, tier: str) -> str | None:
        """Take the next job of ``tier``."""
        return self._queues[tier].pop()

    def remove(self, tier: str, owner: str, job_id: str) -> bool:
        """Take a queued job out."""
        return self._queues[tier].remove(owner, job_id)

    def depth(self, tier: str | None = None) -> int:
        """Jobs waiting."""
        if tier is not None:
            return len(self._queues[tier])
        return sum(len(q) for q in self._queues.values())

    def adopt(self, tier: str, owner: str, job_id: str) -> None:
        """Queue a job (nothing is shared here)."""
        self._queues[tier].push(owner, job_id)

    def ended(self, job_id: str) -> None:
        """Nothing to forget: the job left the line when it was handed out."""
