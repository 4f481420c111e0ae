"""WorkerService: registration, the push stream, and the pull path. Thin: decode, call the job
system, encode."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from core.config import CoreSettings
from core.errors import AshaoError, InvalidArgumentError
from core.grpc.context import Callers, Ctx, bearer, expect
from core.grpc.worker_stream import StreamLink
from core.jobs.system import JobSystem
from core.workers.registry import WorkerInfo

log = logging.getLogger("ashao.core.workers")


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Workers: registration, the push stream, the pull path."""

    def __init__(self, *, jobs: JobSystem, settings: CoreSettings, callers: Callers) -> None:
        self._jobs = jobs
        self._registry = jobs.registry
        self._dispatcher = jobs.dispatcher
        self._lifecycle = jobs.lifecycle
        self._settings = settings
        self._callers = callers

    async def _worker(self, context: Ctx) -> WorkerInfo:
        return await self._registry.authenticate(bearer(context))

    async def _puller(self, context: Ctx) -> WorkerInfo:
        """The calling worker, on the pull path (it counts as active while it polls)."""
        return await self._registry.authenticate(bearer(context), polling=True)

    async def RegisterWorker(
        self, request: worker_pb2.RegisterWorkerRequest, context: Ctx
    ) -> worker_pb2.RegisterWorkerResponse:
        """Create a worker, admitted by a join token or its owner's wallet signature."""
        info, token = await self._registry.register(
            name=request.name,
            tiers=list(request.tiers),
            slots=request.slots,
            ip=self._callers.ip(context),
            join_token=request.join_token,
            owner_address=request.owner_address,
            owner_signature=request.owner_signature,
            signed_at_ms=request.signed_at_ms,
        )
        return worker_pb2.RegisterWorkerResponse(
            worker_id=info.id, worker_token=token, tiers=sorted(info.tiers)
        )

    async def Connect(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """The push path: hello, then heartbeats/tokens/results in, assignments/cancels out."""
        info = await self._worker(context)
        first = await context.read()
        if not isinstance(first, worker_pb2.ConnectRequest) or not first.HasField("hello"):
            raise InvalidArgumentError("hello: the first message on Connect must be hello", field="hello")
        slots = first.hello.slots or info.slots
        # Assignments are bounded by slots, cancellations by running jobs.
        link = StreamLink(limit=4 * slots + 256, lookup=self._dispatcher.assignment)
        conn = self._dispatcher.attach(
            info,
            slots=first.hello.slots,
            tiers=list(first.hello.tiers),
            link=link,
            continues_prefix=first.hello.continues_prefix,
        )
        lifecycle = self._lifecycle

        async def store_image(job_id: str, data: bytes, mime_type: str) -> None:
            try:
                await lifecycle.complete_image(info, job_id, data, mime_type)
            except AshaoError as err:
                link.reject(job_id, err)

        async def read_loop() -> None:
            while (raw := await context.read()) is not grpc.aio.EOF:
                msg = expect(raw, worker_pb2.ConnectRequest, "msg")
                self._dispatcher.touch(info)
                kind = msg.WhichOneof("msg")
                try:
                    if kind == "tokens":
                        lifecycle.publish_batch(info, msg.tokens.jobs, link.reject)
                        for done in msg.tokens.completed:
                            try:
                                lifecycle.complete(info, done.job_id)
                            except AshaoError as err:
                                link.reject(done.job_id, err)
                    elif kind == "heartbeat":
                        self._dispatcher.heartbeat(info, msg.heartbeat.tokens_per_sec)
                    elif kind == "complete":
                        lifecycle.complete(info, msg.complete.job_id)
                    elif kind == "failed":
                        f = msg.failed
                        lifecycle.fail(info, f.job_id, f.message, f.retryable)
                    elif kind == "drain":
                        self._dispatcher.drain(conn)
                    elif kind == "image":
                        # Storing the picture touches the disk: never hold up the rest of the stream.
                        r = msg.image
                        link.spawn(store_image(r.job_id, r.data, r.mime_type), f"ashao-image-{r.job_id}")
                except AshaoError as err:
                    job_id = getattr(getattr(msg, kind or "", None), "job_id", "")
                    link.reject(job_id, err)

        async def write_loop() -> None:
            while True:
                msg = await link.outbox.get()
                await context.write(msg)
                link.written(msg)

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
                asyncio.create_task(link.closed.wait(), name=f"ashao-worker-closed-{info.id}"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not tasks[2] and not t.cancelled() and t.exception() is not None:
                        exc = t.exception()
                        link.reason = f"stream error: {exc!r}"
                        if isinstance(exc, AshaoError):
                            raise exc
            finally:
                for t in (*tasks, *link.tasks):
                    t.cancel()
                await asyncio.gather(*tasks, *link.tasks, return_exceptions=True)
        finally:
            if link.dropped:
                log.warning("dropped %d refusals to worker %s (it was not reading)", link.dropped, info.id)
            self._dispatcher.detach(conn, reason=link.reason)

    async def ClaimJob(
        self, request: worker_pb2.ClaimJobRequest, context: Ctx
    ) -> worker_pb2.ClaimJobResponse:
        """Take the next queued job of a tier, if any."""
        job = self._dispatcher.claim(await self._puller(context), request.tier)
        if job is None:
            return worker_pb2.ClaimJobResponse()
        return worker_pb2.ClaimJobResponse(
            job=job.snapshot().to_proto(),
            messages=job.messages_to_proto(),
            prefix=job.prefix,
            max_tokens=job.remaining_tokens,
            temperature=job.sampling.temperature,
            stop=job.sampling.stop,
        )

    async def PublishTokens(
        self, request: worker_pb2.PublishTokensRequest, context: Ctx
    ) -> worker_pb2.PublishTokensResponse:
        """Publish tokens of a job assigned to this worker."""
        info = await self._puller(context)
        jt = request.tokens
        if not jt.job_id:
            raise InvalidArgumentError("jobId: required", field="jobId")
        return worker_pb2.PublishTokensResponse(accepted=self._lifecycle.publish(info, jt))

    async def CompleteJob(
        self, request: worker_pb2.CompleteJobRequest, context: Ctx
    ) -> worker_pb2.CompleteJobResponse:
        """Finish a job assigned to this worker."""
        return worker_pb2.CompleteJobResponse(
            tokens=self._lifecycle.complete(await self._puller(context), request.job_id)
        )

    async def FailJob(self, request: worker_pb2.FailJobRequest, context: Ctx) -> worker_pb2.FailJobResponse:
        """Give up a job assigned to this worker."""
        state = self._lifecycle.fail(
            await self._puller(context), request.job_id, request.message, request.retryable
        )
        return worker_pb2.FailJobResponse(state=state.to_proto())

    async def Heartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Ctx
    ) -> worker_pb2.HeartbeatResponse:
        """Liveness and throughput of a pull worker."""
        self._dispatcher.heartbeat(await self._puller(context), request.tokens_per_sec)
        return worker_pb2.HeartbeatResponse(heartbeat_interval_ms=self._settings.heartbeat_interval_ms)

    async def GetWorkerAccount(
        self, request: worker_pb2.GetWorkerAccountRequest, context: Ctx
    ) -> worker_pb2.GetWorkerAccountResponse:
        """The calling worker's earnings and stats."""
        info = await self._worker(context)
        a = await self._jobs.queries.worker_account(info)
        return worker_pb2.GetWorkerAccountResponse(
            worker_id=info.id,
            name=info.name,
            earnings=a.earnings,
            jobs_completed=a.jobs_completed,
            tokens_per_sec=info.tokens_per_sec,
            tokens_generated=a.tokens_generated,
            connected=info.connection is not None,
            owner_address=info.owner_address,
            trusted_slots=info.standing.trusted(info.connection.slots if info.connection else info.slots),
        )
