"""A connected stream worker as dispatch sees it: its slots, what it runs, and how to reach it.

``WorkerLink`` is the seam between dispatch and the transport: the gRPC Connect stream implements it
today; dispatch never touches the stream itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class WorkerLink(Protocol):
    """How the core reaches one connected worker. Calls only queue a message; they never block."""

    def assign(self, job_id: str) -> None:
        """Send the worker the assignment of ``job_id``."""
        ...

    def cancel(self, job_id: str, reason: str) -> None:
        """Tell the worker to stop ``job_id``."""
        ...

    def close(self, reason: str) -> None:
        """End the connection (the core gave up on it, or it was replaced)."""
        ...


@dataclass(eq=False, slots=True)
class Connection:
    """One open stream of a worker."""

    worker_id: str
    tiers: frozenset[str]
    slots: int
    link: WorkerLink
    running: set[str] = field(default_factory=set)
    draining: bool = False
    continues_prefix: bool = False
    """Its backend continues a partial answer seamlessly (it may take a job left mid-answer)."""
    trusted: int = 0
    """Jobs the core gives it at once (its standing, at most ``slots``; 0 means ``slots``)."""
    pace: float = 0.0
    """Tokens per second of one of its answers, as the core measured them (0: not yet measured)."""
    last_assigned: float = 0.0
    """Monotonic time it was last given a job (ties between equally free workers go to the one idle
    longest)."""

    @property
    def capacity(self) -> int:
        """Jobs it is given at once: its claim, capped by what it earned."""
        return min(self.slots, self.trusted) if self.trusted else self.slots

    @property
    def free(self) -> int:
        """Free slots."""
        return 0 if self.draining else self.capacity - len(self.running)

    @property
    def load(self) -> float:
        """Share of its capacity in use."""
        return len(self.running) / self.capacity
