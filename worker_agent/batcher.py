"""The single writer of a worker's Connect stream, and the token batching that makes it fast.

A gRPC message costs about the same whatever its size, so tokens are never sent one per message:
the tokens of ALL running jobs go into one ``TokenBatch`` per flush. A flush happens
``flush_interval`` after the oldest pending token, at once for a job's first token (time to first
token), and at once when more than ``max_pending_tokens`` are held (bounded memory). Emitting a
token only appends to a list; the writer task wakes once per flush, not once per token. The flush
interval is measured on the ``Clock`` the batcher is given (the event loop's by default).

Everything else the worker says (heartbeats, completions, failures, pictures, drain) goes through
the same writer, after the tokens queued before it, so a job's ``JobComplete`` always follows its
last tokens. grpc.aio forbids concurrent writes on a call; this is the only task that writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from ashao.v1 import worker_pb2
from worker_agent.backends import Emit
from worker_agent.clock import LOOP_CLOCK, Clock, Timer


class StreamWriter(Protocol):
    """The writing half of a Connect call."""

    async def write(self, request: worker_pb2.ConnectRequest) -> None:
        """Send one message."""
        ...

    async def done_writing(self) -> None:
        """Half-close the stream."""
        ...


def _utf8(token: str) -> str:
    return token.encode("utf-8", "replace").decode("utf-8")


class _Run:
    """The tokens of one job's current attempt on this stream."""

    __slots__ = ("closed", "job_id", "pending", "sent")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.pending: list[str] = []
        self.sent = 0
        """Tokens of this attempt already taken into batches: the offset of the next run sent."""
        self.closed = False


class TokenBatcher:
    """Coalesces tokens and serialises every write of one Connect stream."""

    def __init__(
        self,
        call: StreamWriter,
        *,
        flush_interval_s: float,
        max_pending_tokens: int = 4096,
        clock: Clock = LOOP_CLOCK,
    ) -> None:
        self._call = call
        self._clock = clock
        self._interval = flush_interval_s
        self._max_pending = max_pending_tokens
        self._runs: dict[str, _Run] = {}
        self._dirty: dict[str, _Run] = {}
        """Runs with pending tokens, in the order they got them."""
        self._pending = 0
        self._controls: list[worker_pb2.ConnectRequest] = []
        self._completed: list[worker_pb2.JobComplete] = []
        """Completions that ride in the next batch, after its tokens (one message fewer per job)."""
        self._ready = asyncio.Event()
        self._timer: Timer | None = None
        self._closing = False
        self.tokens_added = 0
        """Tokens emitted by the jobs of this stream (sent or dropped)."""
        self.tokens_sent = 0
        """Tokens written in batches."""
        self.batches_sent = 0
        """``TokenBatch`` messages written."""
        self.messages_sent = 0
        """Messages of any kind written."""

    # -- producers (synchronous, called from jobs and the reader) ---------------------------

    def open(self, job_id: str) -> Emit:
        """Start a job's run (offsets from 0); returns the ``emit`` its backend calls."""
        run = _Run(job_id)
        old = self._runs.get(job_id)
        if old is not None:
            old.closed = True
            self._drop(old)
        self._runs[job_id] = run

        def emit(tokens: Sequence[str]) -> None:
            """Queue ``tokens`` of this run (ignored once the run is over)."""
            self._add(run, tokens)

        return emit

    def _add(self, run: _Run, tokens: Sequence[str]) -> None:
        if run.closed or not tokens:
            return
        first = run.sent == 0 and not run.pending
        run.pending.extend(tokens)
        if run.job_id not in self._dirty:
            self._dirty[run.job_id] = run
        n = len(tokens)
        self._pending += n
        self.tokens_added += n
        if first or self._pending >= self._max_pending:
            self._fire()
        elif self._timer is None and not self._ready.is_set():
            self._timer = self._clock.call_later(self._interval, self._fire)

    def discard(self, job_id: str) -> None:
        """Forget a job the core ended: its pending tokens are dropped and later ones ignored."""
        run = self._runs.pop(job_id, None)
        if run is not None:
            run.closed = True
            self._drop(run)

    def _drop(self, run: _Run) -> None:
        if self._dirty.get(run.job_id) is run:
            del self._dirty[run.job_id]
            self._pending -= len(run.pending)
        run.pending = []

    def send(self, msg: worker_pb2.ConnectRequest) -> None:
        """Queue a message; it is written after every token emitted before this call."""
        self._controls.append(msg)
        self._fire()

    def complete(self, job_id: str, finish_reason: str) -> None:
        """The job finished: its remaining tokens, then its completion, in the next batch."""
        self._close_run(job_id)
        self._completed.append(worker_pb2.JobComplete(job_id=job_id, finish_reason=finish_reason))
        self._fire()

    def fail(self, job_id: str, message: str, retryable: bool) -> None:
        """The job failed: its remaining tokens, then ``JobFailed``."""
        self._close_run(job_id)
        self.send(
            worker_pb2.ConnectRequest(
                failed=worker_pb2.JobFailed(job_id=job_id, message=message, retryable=retryable)
            )
        )

    def _close_run(self, job_id: str) -> None:
        run = self._runs.pop(job_id, None)
        if run is not None:
            run.closed = True  # pending tokens stay queued and go out before the final message

    def close(self) -> None:
        """Flush what is queued, then half-close the stream; ``run()`` returns after that."""
        self._closing = True
        self._fire()

    def _fire(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._ready.set()

    # -- the writer -------------------------------------------------------------------------

    def _take(self) -> list[worker_pb2.ConnectRequest]:
        msgs: list[worker_pb2.ConnectRequest] = []
        if self._dirty or self._completed:
            batch = worker_pb2.ConnectRequest()
            batch.tokens.SetInParent()
            add = batch.tokens.jobs.add
            for run in self._dirty.values():
                # Field by field into the batch: ~3x cheaper than building each JobTokens by keywords.
                jt = add()
                jt.job_id = run.job_id
                jt.offset = run.sent
                try:
                    jt.tokens.extend(run.pending)
                except ValueError:  # a lone surrogate from a backend: not UTF-8, so not sendable
                    del jt.tokens[:]
                    jt.tokens.extend(_utf8(t) for t in run.pending)
                run.sent += len(run.pending)
                run.pending = []
            if self._completed:
                batch.tokens.completed.extend(self._completed)
                self._completed = []
            self.tokens_sent += self._pending
            self.batches_sent += 1
            self._dirty.clear()
            self._pending = 0
            msgs.append(batch)
        if self._controls:
            msgs.extend(self._controls)
            self._controls = []
        return msgs

    async def run(self) -> None:
        """Write until ``close()``: each wakeup sends one batch of every job's tokens, then the rest."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for msg in self._take():
                await self._call.write(msg)
                self.messages_sent += 1
            if self._closing and not self._dirty and not self._controls and not self._completed:
                await self._call.done_writing()
                return
