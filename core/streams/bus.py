"""The token bus seam: where a reader finds a job's event log, live or recently finished.

The process that runs a job appends to its log; readers (the Subscribe and StreamJob streams, the
relay's floor) attach cursors to it. ``TokenBus`` is the seam for running more than one core: a
distributed implementation mirrors logs published elsewhere into local ``JobLog``s, so readers keep
the same cursor code. ``LocalBus`` serves one process: live logs by job id, and finished ones in a
cache bounded by their total tokens (older ones are rebuilt from the store by the caller).
"""

from __future__ import annotations

from typing import Protocol

from core.streams.log import FinishedLogs, JobLog


class TokenBus(Protocol):
    """Find the event log of a job."""

    def publish(self, log: JobLog) -> None:
        """``log`` is live: readers may find it until it is retired."""
        ...

    def retire(self, log: JobLog) -> None:
        """``log`` has ended: keep it for late readers while room allows."""
        ...

    def find(self, job_id: str) -> JobLog | None:
        """The live or recently finished log of ``job_id``."""
        ...

    def remember(self, log: JobLog) -> None:
        """Keep a finished log rebuilt from the store, for the next reader."""
        ...

    def follow(self, job_id: str, core_id: str) -> JobLog | None:
        """The log of a job another core runs (``core_id``, or '' if no core took it yet), mirrored
        here; None where there are no other cores."""
        ...


class LocalBus:
    """Every log of this process."""

    def __init__(self, *, finished_tokens_kept: int) -> None:
        self._live: dict[str, JobLog] = {}
        self._finished = FinishedLogs(finished_tokens_kept)

    def publish(self, log: JobLog) -> None:
        """Make ``log`` findable."""
        self._live[log.job_id] = log

    def retire(self, log: JobLog) -> None:
        """Move ``log`` to the finished cache."""
        if self._live.get(log.job_id) is log:
            del self._live[log.job_id]
        self._finished.put(log)

    def find(self, job_id: str) -> JobLog | None:
        """The live log of ``job_id``, else its cached finished one."""
        return self._live.get(job_id) or self._finished.get(job_id)

    def remember(self, log: JobLog) -> None:
        """Cache a finished log."""
        self._finished.put(log)

    def follow(self, job_id: str, core_id: str) -> JobLog | None:
        """One core: every unfinished job is this core's own."""
        return None
