"""One welcomed Connect stream: the jobs pushed down it, its single writer, its heartbeat, its drain.

Assignments run as owned tasks, up to ``slots`` at once; CancelJob (or a rejection) stops a job's
task and with it the backend's upstream request. Everything the session writes goes through its
``TokenBatcher``. When the session ends, every task it started has ended too. Heartbeats, token
flushes and the drain timeout follow the session's ``Clock``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any, Protocol

from ashao.v1 import worker_pb2
from ashao_common.tracing import Attributes, Carrier, Tracer
from worker_agent.backends import BackendError, ChatBackend, ChatMessage, ChatRequest, Emit
from worker_agent.backends.images import ImageBackend
from worker_agent.batcher import StreamWriter, TokenBatcher
from worker_agent.clock import LOOP_CLOCK, Clock
from worker_agent.config import AgentSettings

log = logging.getLogger("ashao.worker")


class ConnectCall(StreamWriter, Protocol):
    """A Connect call after its Welcome: what the session reads and writes."""

    async def read(self) -> object:
        """The next ``ConnectResponse``, or anything else (``grpc.aio.EOF``) once the core has ended."""
        ...


LOST_JOB_CODES = frozenset({"PERMISSION_DENIED", "NOT_FOUND"})
"""Rejection codes meaning the job is no longer this worker's: it is dropped without a word."""


class SessionEnd(enum.Enum):
    """How a stream ended."""

    BROKEN = "broken"
    DRAINED = "drained"


def chat_request(a: worker_pb2.Assignment, trace_headers: Carrier | None = None) -> ChatRequest:
    """The backend's view of a chat assignment (``a.model``, the tier's public name, is not the
    backend's model: each backend is configured with its own)."""
    return ChatRequest(
        job_id=a.job_id,
        messages=tuple(ChatMessage(m.role, m.content) for m in a.messages),
        max_tokens=a.max_tokens,
        prefix=a.prefix,
        trace_headers=tuple(trace_headers.items()) if trace_headers else (),
        temperature=a.temperature if a.HasField("temperature") else None,
        stop=tuple(a.stop),
    )


class Session:
    """The jobs, the writer and the heartbeat of one welcomed stream."""

    def __init__(
        self,
        call: ConnectCall,
        welcome: worker_pb2.Welcome,
        *,
        settings: AgentSettings,
        backend: ChatBackend | None,
        image_backend: ImageBackend | None,
        stopping: asyncio.Event,
        clock: Clock = LOOP_CLOCK,
        tracer: Tracer | None = None,
    ) -> None:
        """``stopping`` asks for a drain. (An abort cancels ``run()``.) ``tracer`` (tracing on): each job
        runs in a span continuing the trace its assignment carries."""
        self._s = settings
        self._tracer = tracer
        self._clock = clock
        self._backend = backend
        self._image = image_backend
        self._stopping = stopping
        self._call = call
        self._heartbeat_s = (welcome.heartbeat_interval_ms or 2000) / 1000
        self.batcher = TokenBatcher(
            call,
            flush_interval_s=(welcome.flush_interval_ms or 10) / 1000,
            max_pending_tokens=self._s.max_pending_tokens,
            clock=clock,
        )
        self.jobs: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self.jobs_started = 0
        """Assignments run on this stream."""
        self.heartbeats_sent = 0
        """Heartbeats queued on this stream."""

    async def run(self) -> SessionEnd:
        """Until the stream breaks or a drain ends it. Every task it starts ends with it, cancelled or not."""
        writer = asyncio.create_task(self.batcher.run(), name="ashao-worker-write")
        reader = asyncio.create_task(self._read(), name="ashao-worker-read")
        beat = asyncio.create_task(self._heartbeat(), name="ashao-worker-heartbeat")
        stop = asyncio.create_task(self._stopping.wait(), name="ashao-worker-stop")
        try:
            await asyncio.wait({writer, reader, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stop.done() and not writer.done() and not reader.done():
                return await self._drain(writer, reader)
            for t in (writer, reader):
                if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
                    raise exc
            return SessionEnd.BROKEN
        finally:
            if self.jobs:
                log.info("%d running job(s) dropped with the stream; the core requeues them", len(self.jobs))
            await cancel_tasks(writer, reader, beat, stop, *self.jobs.values())

    async def _read(self) -> None:
        while True:
            msg = await self._call.read()
            if not isinstance(msg, worker_pb2.ConnectResponse):
                return  # EOF: the core ended the stream
            kind = msg.WhichOneof("msg")
            if kind == "assignment":
                self._start(msg.assignment)
            elif kind == "cancel":
                log.info("job %s cancelled by the core: %s", msg.cancel.job_id, msg.cancel.reason)
                self._stop(msg.cancel.job_id)
            elif kind == "rejected":
                r = msg.rejected
                log.warning("the core rejected a message about job %s: %s %s", r.job_id, r.code, r.message)
                self._stop(r.job_id)
                if r.code not in LOST_JOB_CODES:
                    # The job is still ours at the core (e.g. a refused picture or token run): hand it
                    # back rather than hold its slot forever. Refusing JobFailed can only mean the job
                    # is no longer ours (PERMISSION_DENIED), so this never loops.
                    self.batcher.fail(r.job_id, f"the core refused the result: {r.message}", retryable=True)

    def _stop(self, job_id: str) -> None:
        """Stop a job (and its upstream request) and forget its unsent tokens."""
        self.batcher.discard(job_id)
        task = self.jobs.pop(job_id, None)
        if task is not None:
            task.cancel()
            if not self.jobs:
                self._idle.set()

    def _start(self, a: worker_pb2.Assignment) -> None:
        if self._draining:
            self.batcher.fail(a.job_id, "the worker is shutting down", retryable=True)
            return
        if a.job_id in self.jobs:
            log.warning("job %s assigned twice; keeping the running attempt", a.job_id)
            return
        if len(self.jobs) >= self._s.slots:
            self.batcher.fail(a.job_id, "the worker has no free slot", retryable=True)
            return
        self._idle.clear()
        self.jobs_started += 1
        job = self._job(a) if self._tracer is None else self._traced_job(self._tracer, a)
        self.jobs[a.job_id] = asyncio.create_task(job, name=f"ashao-job-{a.job_id}")

    async def _traced_job(self, tracer: Tracer, a: worker_pb2.Assignment) -> None:
        """``_job`` in a span under the core's dispatch of it; the upstream call gets its own."""
        attributes: Attributes = {"ashao.job.id": a.job_id, "ashao.attempt": a.attempt, "ashao.tier": a.tier}
        span = tracer.start(
            "job", parent=tracer.extract(a.trace_context), kind="consumer", attributes=attributes
        )
        with tracer.active(span):
            await self._job(a, tracer)

    async def _job(self, a: worker_pb2.Assignment, tracer: Tracer | None = None) -> None:
        job_id = a.job_id
        try:
            if a.HasField("image"):
                if self._image is None:
                    raise BackendError("this worker has no image backend")
                p = a.image
                data, mime = await self._image.generate(
                    prompt=p.prompt, style=p.style, width=p.width, height=p.height, nsfw=p.nsfw
                )
                self.batcher.send(
                    worker_pb2.ConnectRequest(
                        image=worker_pb2.ImageResult(job_id=job_id, data=data, mime_type=mime)
                    )
                )
            else:
                if self._backend is None:
                    raise BackendError("this worker has no chat backend")
                emit = self.batcher.open(job_id)
                if tracer is None:
                    finish = await self._backend.generate(chat_request(a), emit)
                else:
                    finish = await self._upstream(tracer, a, emit)
                self.batcher.complete(job_id, finish)
        except BackendError as exc:
            log.warning("job %s failed (%s): %s", job_id, "retryable" if exc.retryable else "final", exc)
            self.batcher.fail(job_id, str(exc), exc.retryable)
            if tracer is not None:
                tracer.fail(tracer.current(), str(exc))
        except Exception as exc:
            # A backend bug must cost one job, not the stream every other job rides on.
            log.exception("job %s: unexpected error", job_id)
            self.batcher.fail(job_id, f"the worker failed: {type(exc).__name__}", retryable=True)
            if tracer is not None:
                tracer.fail(tracer.current(), f"the worker failed: {type(exc).__name__}")
        finally:
            if self.jobs.get(job_id) is asyncio.current_task():
                del self.jobs[job_id]
                if not self.jobs:
                    self._idle.set()

    async def _upstream(self, tracer: Tracer, a: worker_pb2.Assignment, emit: Emit) -> str:
        """The backend's answer, in a client span whose context goes along with the upstream request."""
        assert self._backend is not None
        span = tracer.start(
            "upstream chat completion", kind="client", attributes={"ashao.backend": self._s.backend or ""}
        )
        with tracer.active(span):
            finish = await self._backend.generate(chat_request(a, tracer.inject(span)), emit)
            span.set_attribute("ashao.finish_reason", finish)
            return finish

    async def _heartbeat(self) -> None:
        """Every interval: the tokens emitted per second since the last beat, and the running jobs."""
        clock = self._clock
        last_t, last_n = clock.time(), self.batcher.tokens_added
        while True:
            await clock.sleep(self._heartbeat_s)
            now, n = clock.time(), self.batcher.tokens_added
            rate = (n - last_n) / max(now - last_t, 1e-3)
            last_t, last_n = now, n
            self.batcher.send(
                worker_pb2.ConnectRequest(
                    heartbeat=worker_pb2.WorkerHeartbeat(tokens_per_sec=rate, running=len(self.jobs))
                )
            )
            self.heartbeats_sent += 1

    async def _drain(self, writer: asyncio.Task[None], reader: asyncio.Task[None]) -> SessionEnd:
        """WorkerDrain, let running jobs finish (bounded), hand back the rest, flush, half-close."""
        self._draining = True
        log.info(
            "draining: no new jobs; finishing %d running job(s) (at most %g s)",
            len(self.jobs),
            self._s.drain_timeout_s,
        )
        self.batcher.send(worker_pb2.ConnectRequest(drain=worker_pb2.WorkerDrain()))
        if self.jobs:
            idle = asyncio.create_task(self._idle.wait(), name="ashao-worker-idle")
            timeout = asyncio.create_task(
                self._clock.sleep(self._s.drain_timeout_s), name="ashao-worker-drain-timeout"
            )
            try:
                await asyncio.wait({idle, timeout, writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                await cancel_tasks(idle, timeout)
        if writer.done() or reader.done():
            log.warning("the stream broke while draining")
            return SessionEnd.DRAINED
        left = list(self.jobs.items())
        if left:
            log.warning("drain timeout: handing %d unfinished job(s) back to the core", len(left))
            self.jobs.clear()
            await cancel_tasks(*(t for _, t in left))
            for job_id, _ in left:
                self.batcher.fail(job_id, "the worker shut down before finishing", retryable=True)
        self.batcher.close()
        grace = self._s.shutdown_grace_s
        await asyncio.wait({writer}, timeout=grace)
        if writer.done():
            # The core ends the call once it has read everything up to the half-close.
            await asyncio.wait({reader}, timeout=grace)
        log.info("drained")
        return SessionEnd.DRAINED


async def cancel_tasks(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until they have ended (their errors were already handled or don't matter)."""
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
