"""The worker service: registration, the push stream, and the pull path.

Thin like the other servicers: it decodes, calls the coordinator, encodes. What is particular to the
push stream is the bounded outbox between the coordinator (which pushes assignments and
cancellations from anywhere) and the stream's single writer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from core.config import CoreSettings
from core.coordinator import Coordinator, WorkerInfo
from core.errors import AshaoError, InvalidArgumentError
from core.jobs import Job
from core.servicers import JOB_STATES, Ctx, bearer, job_to_proto, messages_of, prefix_of

log = logging.getLogger("ashao.core.workers")


def assignment_of(job: Job) -> worker_pb2.ConnectResponse:
    """The Assignment message of a job about to be pushed."""
    image = None
    if job.image is not None:
        i = job.image
        image = worker_pb2.ImageParams(
            prompt=i.prompt, style=i.style, aspect=i.aspect, width=i.width, height=i.height, nsfw=i.nsfw
        )
    return worker_pb2.ConnectResponse(
        assignment=worker_pb2.Assignment(
            image=image,
            job_id=job.id,
            tier=job.tier,
            model=job.model,
            messages=messages_of(job),
            max_tokens=job.max_tokens - len(job.log.tokens),
            prefix=prefix_of(job),
            attempt=job.attempts,
        )
    )


class _Stream:
    """One worker's Connect stream: its outbox, its end, and the work it started."""

    def __init__(self, limit: int) -> None:
        self.outbox: asyncio.Queue[worker_pb2.ConnectResponse] = asyncio.Queue(maxsize=limit)
        self.closed = asyncio.Event()
        self.reason = "stream closed"
        self.dropped = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def close(self, reason: str) -> None:
        """End the stream (the coordinator gave up on it, or it was replaced)."""
        if not self.closed.is_set():
            self.reason = reason
            self.closed.set()

    def put(self, msg: worker_pb2.ConnectResponse, *, essential: bool) -> None:
        """Queue ``msg``. A worker that lets essential messages pile up is not reading: it is let go;
        refusals beyond the bound are dropped (and counted)."""
        try:
            self.outbox.put_nowait(msg)
        except asyncio.QueueFull:
            if essential:
                self.close("the worker is not reading its stream")
            else:
                self.dropped += 1

    def spawn(self, coro: Any, name: str) -> None:
        """Run ``coro`` alongside the stream, cancelled when the stream ends."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Workers: registration, the push stream, the pull path."""

    def __init__(self, *, coordinator: Coordinator, settings: CoreSettings) -> None:
        self._c = coordinator
        self._settings = settings

    def _worker(self, context: Ctx) -> WorkerInfo:
        return self._c.authenticate(bearer(context))

    async def RegisterWorker(
        self, request: worker_pb2.RegisterWorkerRequest, context: Ctx
    ) -> worker_pb2.RegisterWorkerResponse:
        """Create a worker."""
        wid, token, tiers = await self._c.register_worker(
            name=request.name, tiers=list(request.tiers), slots=request.slots
        )
        return worker_pb2.RegisterWorkerResponse(worker_id=wid, worker_token=token, tiers=tiers)

    async def Connect(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """The push path: hello, then heartbeats/tokens/results in, assignments/cancels out."""
        info = self._worker(context)
        first = await context.read()
        if not isinstance(first, worker_pb2.ConnectRequest) or not first.HasField("hello"):
            raise InvalidArgumentError("hello: the first message on Connect must be hello", field="hello")
        slots = first.hello.slots or info.slots
        stream = _Stream(limit=4 * slots + 256)  # assignments are bounded by slots, cancels by running jobs

        def push(job_id: str) -> None:
            job = self._c.assignment(job_id)
            if job is not None:
                stream.put(assignment_of(job), essential=True)

        def cancel(job_id: str, reason: str) -> None:
            msg = worker_pb2.ConnectResponse(cancel=worker_pb2.CancelJob(job_id=job_id, reason=reason))
            stream.put(msg, essential=True)

        def reject(job_id: str, err: AshaoError) -> None:
            msg = worker_pb2.ConnectResponse(
                rejected=worker_pb2.JobRejected(job_id=job_id, code=err.code.name, message=err.message)
            )
            stream.put(msg, essential=False)

        view = self._c.attach(
            info,
            slots=first.hello.slots,
            tiers=list(first.hello.tiers),
            push=push,
            cancel=cancel,
            close=stream.close,
        )

        async def store_image(job_id: str, data: bytes, mime_type: str) -> None:
            try:
                await self._c.complete_image(info, job_id, data, mime_type)
            except AshaoError as err:
                reject(job_id, err)

        async def read_loop() -> None:
            while (msg := await context.read()) is not grpc.aio.EOF:
                assert isinstance(msg, worker_pb2.ConnectRequest)
                self._c.touch(info)
                kind = msg.WhichOneof("msg")
                try:
                    if kind == "tokens":
                        for jt in msg.tokens.jobs:
                            try:
                                offset = jt.offset if jt.HasField("offset") else None
                                self._c.publish(info, jt.job_id, offset, list(jt.tokens))
                            except AshaoError as err:
                                reject(jt.job_id, err)
                        for done in msg.tokens.completed:
                            try:
                                self._c.complete(info, done.job_id)
                            except AshaoError as err:
                                reject(done.job_id, err)
                    elif kind == "heartbeat":
                        self._c.heartbeat(info, msg.heartbeat.tokens_per_sec)
                    elif kind == "complete":
                        self._c.complete(info, msg.complete.job_id)
                    elif kind == "failed":
                        f = msg.failed
                        self._c.fail(info, f.job_id, f.message, f.retryable)
                    elif kind == "drain":
                        self._c.drain(view)
                    elif kind == "image":
                        # Storing the picture touches the disk: never hold up the rest of the stream.
                        r = msg.image
                        stream.spawn(store_image(r.job_id, r.data, r.mime_type), f"ashao-image-{r.job_id}")
                except AshaoError as err:
                    job_id = getattr(getattr(msg, kind or "", None), "job_id", "")
                    reject(job_id, err)

        async def write_loop() -> None:
            while True:
                await context.write(await stream.outbox.get())

        try:
            await context.write(
                worker_pb2.ConnectResponse(
                    welcome=worker_pb2.Welcome(
                        worker_id=info.id,
                        heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
                        flush_interval_ms=self._settings.flush_interval_ms,
                    )
                )
            )
            tasks = [
                asyncio.create_task(read_loop(), name=f"ashao-worker-read-{info.id}"),
                asyncio.create_task(write_loop(), name=f"ashao-worker-write-{info.id}"),
                asyncio.create_task(stream.closed.wait(), name=f"ashao-worker-closed-{info.id}"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not tasks[2] and not t.cancelled() and t.exception() is not None:
                        exc = t.exception()
                        stream.reason = f"stream error: {exc!r}"
                        if isinstance(exc, AshaoError):
                            raise exc
            finally:
                for t in (*tasks, *stream.tasks):
                    t.cancel()
                await asyncio.gather(*tasks, *stream.tasks, return_exceptions=True)
        finally:
            if stream.dropped:
                log.warning("dropped %d refusals to worker %s (it was not reading)", stream.dropped, info.id)
            self._c.detach(view, reason=stream.reason)

    async def ClaimJob(
        self, request: worker_pb2.ClaimJobRequest, context: Ctx
    ) -> worker_pb2.ClaimJobResponse:
        """Take the next queued job of a tier, if any."""
        info = self._worker(context)
        job = self._c.claim(info, request.tier)
        if job is None:
            return worker_pb2.ClaimJobResponse()
        return worker_pb2.ClaimJobResponse(
            job=job_to_proto(self._c.snapshot(job)),
            messages=messages_of(job),
            prefix=prefix_of(job),
            max_tokens=job.max_tokens - len(job.log.tokens),
        )

    async def PublishTokens(
        self, request: worker_pb2.PublishTokensRequest, context: Ctx
    ) -> worker_pb2.PublishTokensResponse:
        """Publish tokens of a job assigned to this worker."""
        info = self._worker(context)
        jt = request.tokens
        if not jt.job_id:
            raise InvalidArgumentError("jobId: required", field="jobId")
        accepted = self._c.publish(
            info, jt.job_id, jt.offset if jt.HasField("offset") else None, list(jt.tokens)
        )
        return worker_pb2.PublishTokensResponse(accepted=accepted)

    async def CompleteJob(
        self, request: worker_pb2.CompleteJobRequest, context: Ctx
    ) -> worker_pb2.CompleteJobResponse:
        """Finish a job assigned to this worker."""
        info = self._worker(context)
        return worker_pb2.CompleteJobResponse(tokens=self._c.complete(info, request.job_id))

    async def FailJob(self, request: worker_pb2.FailJobRequest, context: Ctx) -> worker_pb2.FailJobResponse:
        """Give up a job assigned to this worker."""
        info = self._worker(context)
        state = self._c.fail(info, request.job_id, request.message, request.retryable)
        return worker_pb2.FailJobResponse(state=JOB_STATES[state])

    async def Heartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Ctx
    ) -> worker_pb2.HeartbeatResponse:
        """Liveness and throughput of a pull worker."""
        info = self._worker(context)
        self._c.heartbeat(info, request.tokens_per_sec)
        return worker_pb2.HeartbeatResponse(heartbeat_interval_ms=self._settings.heartbeat_interval_ms)

    async def GetWorkerAccount(
        self, request: worker_pb2.GetWorkerAccountRequest, context: Ctx
    ) -> worker_pb2.GetWorkerAccountResponse:
        """The calling worker's earnings and stats."""
        info = self._worker(context)
        a = await self._c.worker_account(info)
        return worker_pb2.GetWorkerAccountResponse(
            worker_id=info.id,
            name=info.name,
            earnings=a.earnings,
            jobs_completed=a.jobs_completed,
            tokens_generated=a.tokens_generated,
            tokens_per_sec=info.tokens_per_sec,
            connected=info.view is not None,
        )
