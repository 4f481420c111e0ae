"""What happens to a job once it is queued: assigned, tokens, done | failed | cancelled, retried.

Every transition goes through here, on either worker path (the push stream or the REST pull path).
Ends are written by the Settler, so a caller learns an outcome only once it is durable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from ashao.v1 import worker_pb2
from core.config import CoreSettings
from core.errors import AshaoError, InvalidArgumentError
from core.ids import new_id
from core.jobs.board import JobBoard
from core.jobs.model import Job, JobState, StoredImage
from core.jobs.repository import JobRepository
from core.jobs.settle import Settler
from core.money.billing import Billing
from core.store import now_ms
from core.store.images import MAX_IMAGE_BYTES, ImageBytes, sniff
from core.streams.log import JobLog, Terminal
from core.workers.registry import WorkerInfo

log = logging.getLogger("ashao.core.jobs")

Reject = Callable[[str, AshaoError], None]
"""Told of a run of tokens that was refused: (job id, why)."""


NO_CONTINUATION = "the answer was cut off mid-way and no worker can continue it; the credits were refunded"


class Lifecycle:
    """Job transitions."""

    def __init__(
        self,
        *,
        board: JobBoard,
        settler: Settler,
        billing: Billing,
        images: ImageBytes,
        settings: CoreSettings,
        core_id: str = "",
    ) -> None:
        self.core_id = core_id
        """This core, as the location of the jobs it runs."""
        self._board = board
        self._settler = settler
        self._billing = billing
        self._images = images
        self._settings = settings
        self.wake: Callable[[], None] = lambda: None
        """Called when a slot may have freed or a job was queued again (dispatch hands out work)."""
        self.elsewhere: Callable[[str, str], None] = lambda job_id, reason: None
        """Asks the other cores to cancel a job this core does not hold (among several cores)."""

    def assign(self, job: Job, worker_id: str) -> None:
        """``worker_id`` takes the job: a new attempt begins after what earlier ones delivered."""
        job.state = JobState.ASSIGNED
        job.worker_id = worker_id
        job.last_progress = job.assigned_at = now = time.monotonic()
        job.attempts += 1
        job.attempt_base = len(job.log.tokens)
        self._board.dispatch_seconds.observe(now - job.queued_at)
        if job.trace is not None:
            job.trace.assigned(worker_id, job.attempts)
        self._settler.write_behind([JobRepository.assigned(job, self.core_id)])

    def publish(self, info: WorkerInfo, run: worker_pb2.JobTokens) -> int:
        """Append the tokens of one job a worker produced; a resent run (by ``offset``) is not counted
        twice. Returns how many tokens of the current attempt the core holds; raises a refusal.
        """
        refused: list[AshaoError] = []
        self.publish_batch(info, (run,), lambda _job_id, err: refused.append(err))
        if refused:
            raise refused[0]
        return self._board.owned(info, run.job_id).attempt_tokens

    def publish_batch(self, info: WorkerInfo, runs: Iterable[worker_pb2.JobTokens], reject: Reject) -> None:
        """Append the tokens of every job of one batch from a worker (``runs``: its ``JobTokens``); a
        run resent (by ``offset``) is not counted twice, one that is refused goes to ``reject`` and the
        others go on.

        One pass at one clock reading, counted once; readers are woken once the whole batch is in
        (each log once), so a stream's writer finds every job's new tokens of the batch together.
        """
        now = time.monotonic()
        lease = now + self._settings.lease_timeout_s
        jobs = self._board.live
        wid = info.id
        streaming, assigned = JobState.STREAMING, JobState.ASSIGNED
        count = 0
        grown: list[JobLog] = []
        try:
            for jt in runs:
                job_id = jt.job_id
                job = jobs.get(job_id)
                try:
                    if (
                        job is None
                        or job.worker_id != wid
                        or (job.state is not streaming and job.state is not assigned)
                    ):
                        job = self._board.owned(info, job_id)  # (raises the refusal)
                    job_log = job.log
                    tokens = job_log.tokens
                    n = len(tokens)
                    have = n - job.attempt_base
                    offset = jt.offset if jt.HasField("offset") else have
                    if offset > have:
                        raise InvalidArgumentError(
                            f"offset: {offset} leaves a gap after the {have} tokens received", field="offset"
                        )
                except AshaoError as err:
                    reject(job_id, err)
                    continue
                fresh: Sequence[str] = jt.tokens
                if have > offset:
                    fresh = fresh[have - offset :]
                room = job.max_tokens - n
                if len(fresh) > room:
                    fresh = fresh[: max(0, room)]
                if job.lease_expires:
                    job.lease_expires = lease
                if not fresh:
                    continue
                if not n:
                    self._first_token(job, now)
                if job.trace is not None and have == 0:
                    job.trace.first_token()
                job.state = streaming
                if job_log.terminal is None:
                    tokens.extend(fresh)
                job.last_progress = now
                count += len(fresh)
                grown.append(job_log)
        finally:
            if count:
                self._board.meter.add(count, now)
                info.standing.relayed(count, now)
                for job_log in grown:
                    job_log.notify()

    def _first_token(self, job: Job, now: float) -> None:
        """A job's first token: callers will have part of an answer from now on."""
        job.log.answer = job.attempts
        self._settler.write_behind([JobRepository.streaming(job.id, job.attempts)])
        self._board.first_token_seconds.observe(now - job.admitted_at)

    def complete(self, info: WorkerInfo, job_id: str) -> int:
        """The worker finished the job: persist the reply and pay out, then publish ``done``.

        Payment follows what the core relayed: a completion without a single token of this attempt
        (while the job had room for more) is no answer; it counts against the worker, and the job goes
        to another worker.
        """
        job = self._board.owned(info, job_id)
        n = len(job.log.tokens)
        self._board.release(job, info)
        if job.image is None and job.attempt_tokens == 0 and job.remaining_tokens > 0:
            info.standing.failed_job()
            info.sync_connection()
            self.retry_or_fail(job, "the worker completed without producing a token", "EMPTY_ANSWER")
            self.wake()
            return 0
        info.standing.delivered_answer(info.connection.slots if info.connection else info.slots)
        if job.image is None:
            info.standing.answered(job.attempt_tokens, time.monotonic() - job.assigned_at)
        info.sync_connection()
        if job.trace is not None:
            job.trace.completed(job.attempt_tokens)
        now = now_ms()
        booking = self._billing.payout(job_id=job.id, tier=job.tier, cost=job.cost, worker_id=info.id)
        statements = JobRepository.completed(job, info.id, now)
        self._settler.finalize(job, JobState.DONE, statements, booking, Terminal("done", tokens=n))
        self.wake()
        return n

    def fail(self, info: WorkerInfo, job_id: str, message: str, retryable: bool) -> JobState:
        """The worker gave the job up: retried elsewhere when allowed, else failed and refunded."""
        job = self._board.owned(info, job_id)
        self._board.release(job, info)
        info.standing.failed_job()
        info.sync_connection()
        if retryable:
            self.retry_or_fail(job, message or "worker failed", "WORKER_FAILED")
        else:
            self.finish_failed(job, message or "the worker could not run this job", "WORKER_FAILED")
        self.wake()
        return job.state

    def take_back(self, job: Job, info: WorkerInfo | None, message: str, reason: str) -> None:
        """The core takes a running job away from its worker (lost, stalled, lease expired)."""
        if info is not None:
            self._board.release(job, info)
            info.standing.failed_job()
            info.sync_connection()
        self.retry_or_fail(job, message, reason)

    def retry_or_fail(self, job: Job, message: str, reason: str) -> None:
        """Queue the job again for another worker, or fail it once its attempts are used up."""
        job.avoid = job.worker_id  # another worker, if there is one, gets the next attempt
        if job.trace is not None:
            job.trace.lost(message)
        if job.attempts >= self._settings.max_attempts:
            self.finish_failed(job, f"{message} (after {job.attempts} attempts)", "ATTEMPTS_EXHAUSTED")
            return
        if job.log.tokens and job.image is None:
            # Callers have part of the answer: only a worker that continues it seamlessly may go on.
            # If the workers at hand cannot, it ends now; if none is connected, the reaper gives one
            # ``continuation_timeout_s`` to come.
            job.continuing = True
            serving = [c for c in self._board.connections.values() if job.tier in c.tiers and not c.draining]
            if serving and not any(c.continues_prefix for c in serving):
                self.finish_failed(job, f"{message}; {NO_CONTINUATION}", "NO_CONTINUATION")
                return

        self._board.requeue(job)
        if not job.continuing:  # (a partial answer stays 'streaming' in the store: it cannot start over)
            self._settler.write_behind([JobRepository.requeued(job.id)])

        log.info("job %s requeued: %s", job.id, message)

    def finish_failed(self, job: Job, message: str, reason: str, state: JobState = JobState.FAILED) -> None:
        """End the job without an answer and refund it."""
        job.error = message
        if job.trace is not None:
            job.trace.lost(message)
        booking = self._billing.refund(job_id=job.id, cost=job.cost, payer=job.payer)
        statements = [JobRepository.ended(job, state, message)]
        self._settler.finalize(
            job, state, statements, booking, Terminal("error", message=message, reason=reason)
        )

    def cancel(self, job_id: str, reason: str) -> None:
        """Stop a live job (its worker is told) and refund it. A finished job is left as it is."""
        job = self._board.get(job_id)
        if job is None:
            self.elsewhere(job_id, reason)
            return
        if job.state.terminal:
            return
        if job.state == JobState.QUEUED:
            self._board.unqueue(job)
        else:
            info = self._board.registry.get(job.worker_id)
            if info is not None:
                conn = info.connection
                self._board.release(job, info)
                if conn is not None:
                    conn.link.cancel(job.id, reason)
        self.finish_failed(job, reason, "CANCELLED", JobState.CANCELLED)
        self.wake()

    async def complete_image(self, info: WorkerInfo, job_id: str, data: bytes, mime_type: str) -> None:
        """A worker delivered the picture: store it, then end the job and pay out in one unit."""
        job = self._board.owned(info, job_id)
        if job.image is None:
            raise InvalidArgumentError("image: this is not an image job", field="image")
        real = sniff(data)
        if not real or len(data) > MAX_IMAGE_BYTES:
            raise InvalidArgumentError(
                f"image: not a PNG, JPEG or WebP of at most {MAX_IMAGE_BYTES} bytes", field="image"
            )
        if mime_type and mime_type != real:
            raise InvalidArgumentError(f"image: bytes are {real}, not {mime_type}", field="image")
        digest = await self._images.save(data, real)
        job = self._board.owned(info, job_id)  # it may have been cancelled while the file was written
        self._board.release(job, info)
        p = job.image
        assert p is not None
        image = StoredImage(new_id("img"), p.prompt, p.style, p.aspect, digest, real)
        statements = JobRepository.image_completed(job, image, info.id, now_ms())
        booking = self._billing.payout(job_id=job.id, tier=job.tier, cost=job.cost, worker_id=info.id)
        self._settler.finalize(job, JobState.DONE, statements, booking, Terminal("done"))
        self.wake()
