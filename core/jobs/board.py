"""The job system's state in memory: live jobs, their queue, and the workers that can take them.

Pure bookkeeping that keeps its invariants (a queued job is in the queue; a running job is in its
worker's running set; an ended job leaves the board and its log retires to the bus's cache); no I/O.
Everything else in ``core.jobs`` changes jobs through it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping

from ashao_common.metrics import Histogram
from ashao_common.tracing import Tracer
from core.economics import TIERS_BY_PRIORITY
from core.errors import PermissionDeniedError
from core.jobs.model import Job, JobState
from core.jobs.queue import JobQueue
from core.jobs.stats import JobsSnapshot, Load, TierLoad, TokenMeter
from core.streams.bus import TokenBus
from core.workers.links import Connection
from core.workers.registry import WorkerInfo, WorkerRegistry

RECENT_OUTCOMES = 500
STALLED_QUEUED_S = 30.0


class JobBoard:
    """Live jobs, by id; queued ones also in ``queue``; connected workers in ``connections``."""

    def __init__(self, *, queue: JobQueue, bus: TokenBus, registry: WorkerRegistry) -> None:
        self.queue = queue
        self.bus = bus
        self.registry = registry
        self._jobs: dict[str, Job] = {}
        self.live: Mapping[str, Job] = self._jobs
        """Live jobs by id, to read (the token path looks its jobs up here without a call)."""
        self.connections: dict[str, Connection] = {}
        """Stream workers that can be pushed to, by worker id."""
        self.meter = TokenMeter()
        self._outcomes: deque[JobState] = deque(maxlen=RECENT_OUTCOMES)
        self.ended_by_state: dict[JobState, int] = dict.fromkeys(JobState, 0)
        """Jobs that left the board for good since start, by how they ended."""
        self.dispatch_seconds = Histogram()
        """Queue wait of each hand-out: queued (or queued again) → given to a worker."""
        self.first_token_seconds = Histogram()
        """Time to first token: a job's admission → its first token at the core."""
        self.tracer: Tracer | None = None
        """Set while tracing is on: jobs admitted then carry their spans."""
        self.jobs_completed = 0
        self.last_send_at = 0.0
        self.closing = False
        """Set when the core stops admitting work."""

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def get(self, job_id: str) -> Job | None:
        """The live job with ``job_id``."""
        return self._jobs.get(job_id)

    def add(self, job: Job) -> None:
        """A new (or recovered) job: live, findable on the bus, queued on its tier. On a queue several
        cores share, it is only published: the core whose workers take it holds it (this one too, if
        it pulls it), and readers here follow it there."""
        if self.queue.shared:
            self.queue.push(job.tier, job.owner, job.id)
            return
        self._jobs[job.id] = job
        self.bus.publish(job.log)
        job.queued_at = job.admitted_at = time.monotonic()
        self.queue.push(job.tier, job.owner, job.id)
        if job.trace is not None:
            job.trace.queued()

    def adopt(self, job: Job) -> None:
        """A job this core took from the shared queue: live here, handed out by this core."""
        self._jobs[job.id] = job
        self.bus.publish(job.log)
        job.queued_at = job.admitted_at = time.monotonic()
        self.queue.adopt(job.tier, job.owner, job.id)

    def requeue(self, job: Job) -> None:
        """Put a job taken from a worker back at the front of its caller's line."""
        job.state = JobState.QUEUED
        job.worker_id = ""
        job.lease_expires = 0.0
        job.queued_at = time.monotonic()
        self.queue.push(job.tier, job.owner, job.id, front=True)
        if job.trace is not None:
            job.trace.queued()

    def unqueue(self, job: Job) -> bool:
        """Take a queued job out of its queue; False if it was not there."""
        return self.queue.remove(job.tier, job.owner, job.id)

    def owned(self, info: WorkerInfo, job_id: str) -> Job:
        """The running job ``job_id`` if ``info``'s worker holds it; PERMISSION_DENIED otherwise."""
        job = self._jobs.get(job_id)
        if job is None or job.worker_id != info.id or not job.state.running:
            raise PermissionDeniedError(
                f"jobId: job {job_id!r} is not assigned to this worker", field="jobId"
            )
        return job

    def forget(self, job: Job) -> None:
        """A job this core handed back to the shared queue leaves its board (it did not end)."""
        self._jobs.pop(job.id, None)
        self.bus.retire(job.log)
        if job.trace is not None:
            job.trace.left("handed back to the shared queue")

    def release(self, job: Job, info: WorkerInfo) -> None:
        """The worker no longer holds the job (it ended, failed, or was taken back)."""
        info.pulled.discard(job.id)
        if info.connection is not None:
            info.connection.running.discard(job.id)
        job.lease_expires = 0.0

    def withdraw(self, job: Job) -> WorkerInfo | None:
        """A job whose admission could not be stored leaves the board as if it never was; returns its
        worker's record if one held it (to be told to stop)."""
        self._jobs.pop(job.id, None)
        self.bus.retire(job.log)
        self.queue.ended(job.id)
        if job.state == JobState.QUEUED:
            self.unqueue(job)
            return None
        info = self.registry.get(job.worker_id) if job.worker_id else None
        if info is not None:
            self.release(job, info)
        return info

    def ended(self, job: Job) -> None:
        """A job left the board for good (its end is durable, or could not be made so)."""
        self._jobs.pop(job.id, None)
        job.log.owner, job.log.state = job.owner, job.state.value  # what the store now says
        self.bus.retire(job.log)
        self.queue.ended(job.id)

        self._outcomes.append(job.state)
        self.ended_by_state[job.state] += 1
        if job.state == JobState.DONE:
            self.jobs_completed += 1

    def serving(self, tier: str) -> bool:
        """Whether a connected worker that serves ``tier`` takes jobs."""
        return any(tier in c.tiers and not c.draining for c in self.connections.values())

    def snapshot(self, *, recent_s: float, now: float | None = None) -> JobsSnapshot:
        """Every figure at once (``recent_s``: how recently a pull worker must have been seen)."""
        now = time.monotonic() if now is None else now
        queued = [now - j.queued_at for j in self._jobs.values() if j.state == JobState.QUEUED]
        conns = list(self.connections.values())
        outcomes = list(self._outcomes)
        return JobsSnapshot(
            active_workers=self.registry.active(now, recent_s),
            live_workers=len(conns),
            slots=sum(c.slots for c in conns),
            busy_slots=sum(len(c.running) for c in conns),
            queue_depth=self.queue.depth(),
            oldest_wait_s=max(queued, default=0.0),
            stalled_queued=sum(1 for w in queued if w > STALLED_QUEUED_S),
            jobs_streaming=sum(1 for j in self._jobs.values() if j.state == JobState.STREAMING),
            jobs_completed=self.jobs_completed,
            tokens_per_sec=self.meter.rate(now),
            recent_outcomes=len(outcomes),
            recent_failures=sum(1 for s in outcomes if s in (JobState.FAILED, JobState.EXPIRED)),
            last_send_at=self.last_send_at,
        )

    def load(self, now: float | None = None) -> Load:
        """Per tier what waits, what runs and who can take it; the workers' slots; the followers."""
        now = time.monotonic() if now is None else now
        conns = [c for c in self.connections.values() if not c.draining]
        waits: dict[str, list[float]] = {t: [] for t in TIERS_BY_PRIORITY}
        running = dict.fromkeys(TIERS_BY_PRIORITY, 0)
        followers = 0
        for job in self._jobs.values():
            followers += job.log.listeners
            if job.state == JobState.QUEUED:
                waits[job.tier].append(now - job.queued_at)
            elif job.state.running:
                running[job.tier] += 1
        tiers = [
            TierLoad(
                tier=t,
                queued=self.queue.depth(t),
                running=running[t],
                oldest_wait_s=max(waits[t], default=0.0),
                workers=sum(1 for c in conns if t in c.tiers),
                free_slots=sum(c.free for c in conns if t in c.tiers),
            )
            for t in TIERS_BY_PRIORITY
        ]
        every = self.connections.values()
        return Load(
            tiers=tiers,
            slots=sum(c.capacity for c in every),
            busy_slots=sum(len(c.running) for c in every),
            followers=followers,
        )
