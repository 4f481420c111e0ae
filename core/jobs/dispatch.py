"""Dispatch: connected workers, and handing queued jobs to them — pushed down their streams, or
claimed over the pull path.

Push, not poll: whenever a job is queued or a slot frees, ``pump()`` pairs the highest-priority
queued job with the best connected worker that serves its tier and has room (core/workers/placement),
and the assignment goes down that worker's link at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from core.config import CoreSettings
from core.economics import TIERS, TIERS_BY_PRIORITY
from core.errors import InvalidArgumentError, PermissionDeniedError
from core.jobs.board import JobBoard
from core.jobs.lifecycle import Lifecycle
from core.jobs.model import Job, JobState
from core.workers.links import Connection, WorkerLink
from core.workers.placement import choose
from core.workers.registry import WorkerInfo, check_slots, check_tiers


class Dispatcher:
    """Worker connections and job hand-out."""

    def __init__(self, *, board: JobBoard, lifecycle: Lifecycle, settings: CoreSettings) -> None:
        self._board = board
        self._lifecycle = lifecycle
        self._settings = settings
        lifecycle.wake = self.pump
        self.on_room: Callable[[], None] = lambda: None
        """Called after each hand-out pass (among several cores: pull more from the shared queue)."""

    # -- the push path ------------------------------------------------------------------------

    def attach(
        self,
        info: WorkerInfo,
        *,
        slots: int,
        tiers: list[str],
        link: WorkerLink,
        continues_prefix: bool = False,
    ) -> Connection:
        """A worker opened its stream: make it dispatchable. A previous stream of it is closed."""
        chosen = check_tiers(tiers) if tiers else info.tiers
        slots = check_slots(slots or info.slots)
        old = info.connection
        if old is not None:
            self.detach(old, reason="replaced by a new connection")
            old.link.close("replaced by a new connection")
        conn = Connection(info.id, chosen, slots, link, continues_prefix=continues_prefix)
        info.connection = conn
        info.sync_connection()
        info.last_seen = time.monotonic()
        self._board.connections[info.id] = conn
        self.pump()
        return conn

    def detach(self, conn: Connection, *, reason: str) -> None:
        """A worker's stream ended: its running jobs go back to the queue (or fail). Idempotent."""
        info = self._board.registry.get(conn.worker_id)
        if info is not None and info.connection is conn:
            info.connection = None
            self._board.connections.pop(conn.worker_id, None)
        running = list(conn.running)
        conn.running.clear()
        conn.draining = True
        for job_id in running:
            job = self._board.get(job_id)
            if job is not None and job.worker_id == conn.worker_id and job.state.running:
                if info is not None:
                    info.standing.failed_job()
                self._lifecycle.retry_or_fail(job, f"worker lost: {reason}", "WORKER_LOST")
        self.pump()

    @staticmethod
    def drain(conn: Connection) -> None:
        """The worker takes no new jobs; it keeps those it has."""
        conn.draining = True

    @staticmethod
    def touch(info: WorkerInfo) -> None:
        """The worker said something: it is alive."""
        info.last_seen = time.monotonic()

    def heartbeat(self, info: WorkerInfo, tokens_per_sec: float) -> None:
        """Liveness and throughput; renews the leases of its pulled jobs."""
        if not math.isfinite(tokens_per_sec) or tokens_per_sec < 0:
            raise InvalidArgumentError(
                "tokens_per_sec: must be a finite number, at least 0", field="tokens_per_sec"
            )
        info.last_seen = time.monotonic()
        info.tokens_per_sec = tokens_per_sec
        deadline = info.last_seen + self._settings.lease_timeout_s
        for job_id in info.pulled:
            job = self._board.get(job_id)
            if job is not None:
                job.lease_expires = deadline

    def assignment(self, job_id: str) -> Job | None:
        """The job behind an assignment about to be pushed (None if it vanished meanwhile)."""
        return self._board.get(job_id)

    def pump(self) -> None:
        """Hand queued jobs to connected workers with free slots, highest tier first."""
        board = self._board
        queue = board.queue
        progress = True
        while progress:
            progress = False
            for tier in TIERS_BY_PRIORITY:
                head = queue.peek(tier)
                if head is None:
                    continue
                job = board.get(head)
                conn = choose(
                    board.connections.values(),
                    tier,
                    shunned=job.avoid if job else "",
                    continuing=job.continuing if job else False,
                )
                if conn is None:
                    continue
                job_id = queue.pop(tier)
                job = board.get(job_id) if job_id else None
                if job is None or job.state != JobState.QUEUED:
                    progress = True  # a stale entry: look again
                    break
                self._lifecycle.assign(job, conn.worker_id)
                conn.running.add(job.id)
                conn.last_assigned = time.monotonic()
                conn.link.assign(job.id)
                progress = True
                break  # start again from the highest tier
        self.on_room()

    # -- the pull path ------------------------------------------------------------------------

    def claim(self, info: WorkerInfo, tier: str) -> Job | None:
        """Take the next queued job of ``tier`` (or of any chat tier the worker serves, highest first).

        Image jobs are delivered only over worker streams (their result is a picture, not tokens).
        """
        if tier and tier not in TIERS:
            raise InvalidArgumentError(f"tier: unknown tier {tier!r}", field="tier")
        if tier and tier not in info.tiers:
            raise PermissionDeniedError(f"tier: this worker is not registered for {tier!r}", field="tier")
        queue = self._board.queue
        for name in (tier,) if tier else TIERS_BY_PRIORITY:
            if not TIERS[name].chat or name not in info.tiers:
                continue
            while (job_id := queue.peek(name)) is not None:
                job = self._board.get(job_id)
                if job is not None and job.state == JobState.QUEUED and job.continuing:
                    break  # a partial answer waits for a worker that continues it; the pull path cannot
                queue.pop(name)
                if job is None or job.state != JobState.QUEUED:
                    continue
                self._lifecycle.assign(job, info.id)
                job.lease_expires = time.monotonic() + self._settings.lease_timeout_s
                info.pulled.add(job.id)
                return job
        return None
