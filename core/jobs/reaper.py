"""Time-driven transitions: workers that went silent, jobs that stalled, leases and queue waits that
ran out. One pass is ``reap(now)``; the composition root runs it on a supervised schedule."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.config import CoreSettings
from core.jobs.board import JobBoard
from core.jobs.dispatch import Dispatcher
from core.jobs.lifecycle import NO_CONTINUATION, Lifecycle
from core.jobs.model import JobState


class Reaper:
    """Takes back what the clock says is lost."""

    INTERVAL_S = 0.25

    def __init__(
        self,
        *,
        board: JobBoard,
        dispatcher: Dispatcher,
        lifecycle: Lifecycle,
        settings: CoreSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        """Monotonic seconds (replaceable in tests)."""
        self._board = board
        self._dispatcher = dispatcher
        self._lifecycle = lifecycle
        self._settings = settings
        self.heartbeat_timeout_s = 3 * settings.heartbeat_interval_ms / 1000
        self._last_tick = 0.0
        self.pauses = 0
        """Times the process was found to have been paused (stopped, or starved of CPU)."""

    async def tick(self) -> None:
        """One pass now; time the process itself lost (a pause) does not count against anyone."""
        now = self.clock()
        if self._last_tick:
            lost = now - self._last_tick - self.INTERVAL_S
            if lost > min(1.0, self.heartbeat_timeout_s / 3):
                self.forgive(lost)
        self._last_tick = now
        self.reap(now)

    def forgive(self, paused_s: float) -> None:
        """The core was not running for ``paused_s`` seconds: the workers' heartbeats and the jobs'
        progress from that time are still unread in the sockets, so every clock that judges them is
        moved forward by the pause instead of blaming them for it."""
        self.pauses += 1
        for info in self._board.registry:
            if info.last_seen:
                info.last_seen += paused_s
            if info.last_polled:
                info.last_polled += paused_s
        for job in self._board:
            job.last_progress += paused_s
            job.queued_at += paused_s
            if job.lease_expires:
                job.lease_expires += paused_s

    def reap(self, now: float) -> None:
        """Lose silent stream workers, take back stalled jobs and expired pull leases, expire old
        queued jobs."""
        board = self._board
        for conn in list(board.connections.values()):
            info = board.registry.get(conn.worker_id)
            if info is not None and now - info.last_seen > self.heartbeat_timeout_s:
                self._dispatcher.detach(conn, reason="missed heartbeats")
                conn.link.close("missed heartbeats")
        stall = self._settings.job_stall_timeout_s
        for job in board:
            if (
                not job.lease_expires
                and job.image is None
                and job.state.running
                and now - job.last_progress > stall
            ):
                # A stream worker that stays alive but stopped producing for this job: take it back.
                holder = board.registry.get(job.worker_id)
                why = f"no token for {stall:.0f} s"
                if holder is not None and holder.connection is not None:
                    holder.connection.link.cancel(job.id, why)
                self._lifecycle.take_back(job, holder, why, "STALLED")
            elif job.lease_expires and job.lease_expires < now and job.state.running:
                self._lifecycle.take_back(
                    job, board.registry.get(job.worker_id), "worker lease expired", "LEASE_EXPIRED"
                )
            elif (
                job.state == JobState.QUEUED
                and job.continuing
                and now - job.queued_at > self._settings.continuation_timeout_s
            ):
                if board.unqueue(job):
                    self._lifecycle.finish_failed(job, NO_CONTINUATION, "NO_CONTINUATION")
            elif job.state == JobState.QUEUED and now - job.queued_at > self._settings.queue_timeout_s:
                if board.unqueue(job):
                    self._lifecycle.finish_failed(
                        job, "no worker took the job in time", "EXPIRED", JobState.EXPIRED
                    )
        self._dispatcher.pump()
