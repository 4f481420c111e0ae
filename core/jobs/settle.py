"""Ending a job: its state, its output and its money in one unit, and its last event only once durable.

The end of a job is decided in memory at once (the worker is told, further tokens are refused), but
the caller's terminal event, and the job leaving the board, wait until the unit that records the end
has committed. If the store refuses the unit, it is tried again with backoff; a completion that still
cannot be stored after ``max_attempts`` is turned into a failure with a refund, and that is what the
caller is told once it is durable. So a client is never told an outcome the store does not hold: a
restart shows exactly what clients were told, and nobody pays for an answer reported as failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from core.jobs.board import JobBoard
from core.jobs.model import Job, JobState
from core.jobs.repository import JobRepository
from core.money.billing import Billing, Booking
from core.store import ConstraintError, Statement, Store
from core.streams.log import Terminal

log = logging.getLogger("ashao.core.jobs")

STORE_FAILED = "the result could not be stored; the job was not charged"


class Settler:
    """Writes the ends of jobs, and the state changes a restart would recover anyway."""

    def __init__(
        self,
        *,
        store: Store,
        billing: Billing,
        board: JobBoard,
        max_attempts: int = 6,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._store = store
        self._billing = billing
        self._board = board
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._pending: set[asyncio.Future[None]] = set()
        self._retrying: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Writes not yet durable."""
        return len(self._pending) + len(self._retrying)

    def finalize(
        self,
        job: Job,
        state: JobState,
        statements: list[Statement],
        booking: Booking,
        terminal: Terminal,
    ) -> None:
        """End ``job`` as ``state``: ``statements`` and ``booking`` in one unit; ``terminal`` once durable.

        A job whose admission is still being committed (it was handed out meanwhile) is ended in memory
        now and written once its admission is durable; if the admission fails, the job never was, and
        ``booking`` is undone."""
        job.state = state
        admitted = job.durable
        if admitted is not None and not admitted.done():

            def after(f: asyncio.Future[None]) -> None:
                if f.cancelled() or f.exception() is not None:
                    self._billing.undo(booking)
                else:
                    self.finalize(job, state, statements, booking, terminal)

            admitted.add_done_callback(after)
            return
        if job.trace is not None:
            job.trace.settling(state.value)
        fut = self._store.submit(statements + booking.statements)
        self._pending.add(fut)

        def written(f: asyncio.Future[None]) -> None:
            self._pending.discard(f)
            if not f.cancelled() and isinstance(f.exception(), ConstraintError):
                self._spawn(self._ended_elsewhere(job, booking))
            elif f.cancelled() or f.exception() is not None:
                log.error("could not store the end of %s (%s); retrying", job.id, _why(f))
                self._spawn(self._retry(job, statements, booking, terminal))
            else:
                self._ended(job, terminal)

        fut.add_done_callback(written)

    async def _retry(
        self,
        job: Job,
        statements: list[Statement],
        booking: Booking,
        terminal: Terminal,
    ) -> None:
        backoff = self._backoff_s
        attempt = 1
        while True:  # ends when a unit commits, or when drain() cancels it at shutdown
            attempt += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
            if attempt > self._max_attempts and job.state == JobState.DONE:
                # The answer cannot be recorded: record the job as failed and refunded instead.
                self._billing.undo(booking)
                job.state = JobState.FAILED
                job.error = STORE_FAILED
                booking = self._billing.refund(job_id=job.id, cost=job.cost, payer=job.payer)
                statements = [JobRepository.ended(job, JobState.FAILED, STORE_FAILED)]
                terminal = Terminal("error", message=STORE_FAILED, reason="STORE_FAILED")
            try:
                await self._store.write(statements + booking.statements)
            except ConstraintError:
                await self._ended_elsewhere(job, booking)
                return
            except Exception as exc:
                log.error("could not store the end of %s (attempt %d: %s)", job.id, attempt, exc)
                continue
            self._ended(job, terminal)
            return

    async def _ended_elsewhere(self, job: Job, booking: Booking) -> None:
        """The store refused this end: the job is settled already (another core ended it first, e.g.
        cancelled it while this one ran it). What the store holds stands, and that is what the caller
        is told; nothing of this end was booked."""
        self._billing.undo(booking)
        stored = None
        for _ in range(self._max_attempts):
            try:
                stored = await JobRepository(self._store).outcome(job.id)
                break
            except Exception as exc:
                log.error("could not read how %s ended: %s", job.id, exc)
                await asyncio.sleep(self._backoff_s)
        if stored is not None and stored.state == JobState.DONE:
            job.state, terminal = JobState.DONE, Terminal("done", tokens=len(job.log.tokens))
        else:
            state = stored.state if stored is not None and stored.state.terminal else JobState.FAILED
            message = (stored.error if stored is not None else "") or f"the job was {state.value} elsewhere"
            job.state, job.error = state, message
            terminal = Terminal("error", message=message, reason=state.value.upper())
        log.info("job %s had ended elsewhere (%s); this end was dropped", job.id, job.state.value)
        self._ended(job, terminal)

    def _ended(self, job: Job, terminal: Terminal) -> None:
        self._board.ended(job)
        job.log.finish(terminal)
        if job.trace is not None:
            job.trace.settled(job.state.value, job.attempts, len(job.log.tokens), job.error)

    def write_behind(self, statements: list[Statement]) -> None:
        """Write without waiting: for changes a restart recovers anyway (assignments, requeues)."""
        fut = self._store.submit(statements)
        self._pending.add(fut)
        fut.add_done_callback(self._written_behind)

    def _written_behind(self, fut: asyncio.Future[None]) -> None:
        self._pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            log.warning("write-behind failed (recovered at restart): %s", _why(fut))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for pending writes; ends still retrying are left for the restart to recover."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
        for task in list(self._retrying):
            task.cancel()
        await asyncio.gather(*self._retrying, return_exceptions=True)


def _why(fut: asyncio.Future[None]) -> str:
    return "cancelled" if fut.cancelled() else str(fut.exception())
