"""ChatService: send, follow, read. Thin: decode, call the job system, encode."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from ashao.v1 import chat_pb2, chat_pb2_grpc, common_pb2
from ashao_common.pacing import Pace
from ashao_common.tracing import Attributes, Tracer
from core.errors import as_domain_error
from core.grpc.context import Callers, Ctx, bearer, expect
from core.grpc.status import ErrorCounts
from core.identity.directory import Directory
from core.identity.principal import Principal
from core.jobs.admission import Sent
from core.jobs.ask import ChatAsk
from core.jobs.model import JobState
from core.jobs.system import JobSystem
from core.streams.fanout import Accepted, Answer, Follower, Multiplexer
from core.streams.log import Events

log = logging.getLogger("ashao.core.grpc")

PEER = Principal("peer", ip="peer")

SEND_SPAN = "ashao.v1.ChatService/SendMessage"
"""The span of a send, whether it came alone or relayed over SendMany."""
SEND_MANY = "/ashao.v1.ChatService/SendMany"

MAX_SENDS_IN_FLIGHT = 256
"""Sends one SendMany stream may have in progress; beyond it the core stops reading the stream, so
the client feels backpressure instead of the core growing a task per message without bound."""


_RPC: Attributes = {"rpc.system": "grpc", "rpc.service": "ashao.v1.ChatService", "rpc.method": "SendMessage"}
_RELAYED: Attributes = {**_RPC, "ashao.relayed": True}


def _state(value: str) -> common_pb2.JobState.ValueType:
    return JobState(value).to_proto()


def _events(sub_id: int, ev: Events, add: Callable[[], chat_pb2.SubscriptionEvent]) -> None:
    # Field by field into the message being built: several times cheaper than constructing each event
    # (and its chunk) by keywords and copying it in.
    if ev.tokens:
        e = add()
        e.sub_id = sub_id
        e.seq = ev.first_seq
        e.chunk.tokens.extend(ev.tokens)
        e.answer = ev.answer
    t = ev.terminal
    if t is not None:
        e = add()
        e.sub_id = sub_id
        e.seq = ev.terminal_seq
        if t.kind == "done":
            e.done.SetInParent()  # (a done with 0 tokens is still a done)
            e.done.tokens = t.tokens
        else:
            e.error.SetInParent()
            e.error.message = t.message
            e.error.reason = t.reason


def _answer(item: Answer, add: Callable[..., chat_pb2.SubscriptionEvent]) -> None:
    """A watch's answer into the message being built."""
    if isinstance(item, Accepted):
        add(
            sub_id=item.sub_id,
            accepted=chat_pb2.WatchAccepted(state=_state(item.state), tokens=item.tokens, answer=item.answer),
        )
    else:
        add(sub_id=item.sub_id, rejected=chat_pb2.WatchRejected(code=item.code, message=item.message))


def call_error(exc: BaseException) -> chat_pb2.CallError:
    """The in-band form of a refusal (what its gRPC status would have said)."""
    err = as_domain_error(exc)
    return chat_pb2.CallError(
        code=err.code.name,
        message=err.message,
        reason=err.reason,
        field=err.field,
        retry_after_s=err.retry_after_s,
    )


def _sent(sent: Sent) -> chat_pb2.SendMessageResponse:
    return chat_pb2.SendMessageResponse(
        job_id=sent.job_id,
        conversation_id=sent.conversation_id,
        max_tokens=sent.max_tokens,
        prompt_tokens=sent.prompt_tokens,
    )


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """Chat: send, follow, read."""

    def __init__(
        self,
        *,
        jobs: JobSystem,
        directory: Directory,
        callers: Callers,
        max_tokens_per_message: int,
        max_watches: int,
        max_watches_untrusted: int,
        pace_max_s: float = 0.0,
        pace_full_rate: float = 30_000.0,
        pace_floor_rate: float = 0.0,
        errors: ErrorCounts | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """``errors`` counts the refusals relayed sends get in-band; ``tracer`` (tracing on) opens a
        span per send under the caller's trace context; ``pace_*``: the window of each Subscribe stream
        (``ashao_common.pacing``)."""
        self._pace = (pace_max_s, pace_full_rate, pace_floor_rate)
        self._jobs = jobs
        self._errors = errors if errors is not None else ErrorCounts()
        self._tracer = tracer
        self._directory = directory
        self._limit = max_tokens_per_message
        self._callers = callers
        self._max_watches = max_watches
        self._max_watches_untrusted = max_watches_untrusted

    async def _principal(self, context: Ctx) -> Principal:
        return await self._directory.resolve(bearer(context), self._callers.ip(context))

    async def _watcher(self, watch: chat_pb2.Watch, context: Ctx) -> Principal:
        """Who a watch is for: another core of the cluster (which authorized its readers itself), the
        end user a relay names, else the stream's own caller."""
        if self._callers.peer(context):
            return PEER

        if watch.credential or watch.client_ip:
            return await self._directory.resolve(
                watch.credential, self._callers.named_ip(context, watch.client_ip)
            )
        return await self._principal(context)

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: Ctx
    ) -> chat_pb2.SendMessageResponse:
        """Persist the message and queue its job."""
        tracer = self._tracer
        if tracer is None:
            return await self._send(request, await self._principal(context))
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        span = tracer.start(SEND_SPAN, parent=tracer.extract(carrier), kind="server", attributes=_RPC)
        with tracer.active(span):
            return await self._send(request, await self._principal(context))

    async def _send(
        self, request: chat_pb2.SendMessageRequest, principal: Principal
    ) -> chat_pb2.SendMessageResponse:
        return _sent(await self._jobs.admission.send(ChatAsk.from_proto(request), principal))

    async def _relayed(self, item: chat_pb2.RelayedSend, context: Ctx) -> chat_pb2.SendMessageResponse:
        """One send of a SendMany stream, for the end user it names (in its own span, tracing on)."""
        principal = await self._directory.resolve(
            item.credential, self._callers.named_ip(context, item.client_ip)
        )
        tracer = self._tracer
        if tracer is None:
            return await self._send(item.send, principal)
        parent = tracer.extract(item.trace_context)
        with tracer.active(tracer.start(SEND_SPAN, parent=parent, kind="server", attributes=_RELAYED)):
            return await self._send(item.send, principal)

    async def SendMany(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """Sends relayed for many end users over one stream; results as each becomes durable."""
        await context.send_initial_metadata(())
        ready: list[chat_pb2.SendResult] = []
        wake = asyncio.Event()
        room = asyncio.Semaphore(MAX_SENDS_IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()

        async def one(item: chat_pb2.RelayedSend) -> None:
            try:
                result = chat_pb2.SendResult(id=item.id, sent=await self._relayed(item, context))
            except Exception as exc:  # every failure is the caller's answer, never the stream's end
                result = chat_pb2.SendResult(id=item.id, error=call_error(exc))
                self._errors.add(SEND_MANY, result.error.code)
            finally:
                room.release()
            ready.append(result)
            wake.set()

        reading = True

        async def read_requests() -> None:
            nonlocal reading
            try:
                while (msg := await context.read()) is not grpc.aio.EOF:
                    req = expect(msg, chat_pb2.SendManyRequest, "sends")
                    for item in req.sends:
                        await room.acquire()
                        task = asyncio.create_task(one(item))
                        running.add(task)
                        task.add_done_callback(running.discard)
            finally:
                reading = False
                wake.set()

        reader = asyncio.create_task(read_requests(), name="ashao-sendmany-read")
        try:
            while reading or running or ready:
                await wake.wait()
                wake.clear()
                if ready:
                    batch = ready[:]
                    ready.clear()
                    await context.write(chat_pb2.SendManyResponse(results=batch))
            if not reader.cancelled() and (exc := reader.exception()) is not None:
                raise exc
        finally:
            reader.cancel()
            for t in running:
                t.cancel()
            await asyncio.gather(reader, *running, return_exceptions=True)

    async def StreamJob(self, request: chat_pb2.StreamJobRequest, context: Ctx):  # type: ignore[no-untyped-def]
        """One job's events after ``after_seq``, until it ends."""
        job_log, _ = await self._jobs.queries.open_log(request.job_id, await self._principal(context))
        follower = Follower(job_log, request.after_seq, max_tokens_per_message=self._limit)
        try:
            while (ev := await follower.next()) is not None:
                if ev.tokens:
                    yield chat_pb2.StreamJobResponse(
                        job_id=request.job_id, seq=ev.first_seq, chunk=common_pb2.TokenChunk(tokens=ev.tokens)
                    )
                t = ev.terminal
                if t is not None:
                    if t.kind == "done":
                        yield chat_pb2.StreamJobResponse(
                            job_id=request.job_id,
                            seq=ev.terminal_seq,
                            done=common_pb2.JobDone(tokens=t.tokens),
                        )
                    else:
                        yield chat_pb2.StreamJobResponse(
                            job_id=request.job_id,
                            seq=ev.terminal_seq,
                            error=common_pb2.JobError(message=t.message, reason=t.reason),
                        )
        finally:
            follower.close()

    async def Subscribe(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """Many jobs over one stream."""
        cap = self._max_watches if self._callers.trusted(context) else self._max_watches_untrusted
        mux = Multiplexer(
            self._jobs.queries.open_log,
            max_tokens_per_message=self._limit,
            max_watches=cap,
            pace=Pace(max_s=self._pace[0], full_rate=self._pace[1], floor_rate=self._pace[2]),
        )
        await context.send_initial_metadata(())  # tells the relay at once that its stream is up

        async def read_requests() -> None:
            try:
                while (msg := await context.read()) is not grpc.aio.EOF:
                    req = expect(msg, chat_pb2.SubscribeRequest, "action")
                    action = req.WhichOneof("action")
                    if action == "watch":
                        w = req.watch
                        await mux.watch(
                            w.sub_id, w.job_id, w.after_seq, functools.partial(self._watcher, w, context)
                        )
                    elif action == "unwatch":
                        mux.unwatch(req.unwatch.sub_id)
                mux.end_input()
            except BaseException:
                mux.abort()  # the stream ends with the reader's error rather than going deaf
                raise

        reader = asyncio.create_task(read_requests(), name="ashao-subscribe-read")
        try:
            while True:
                # Built as the subscriptions are taken: nothing per subscription outlives its event.
                response = chat_pb2.SubscribeResponse()
                add = response.events.add
                if not await mux.next_message(
                    functools.partial(_answer, add=add), functools.partial(_events, add=add)
                ):
                    break
                await context.write(response)
            if reader.done() and not reader.cancelled() and (exc := reader.exception()) is not None:
                raise exc
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            mux.close()

    async def GetJob(self, request: chat_pb2.GetJobRequest, context: Ctx) -> chat_pb2.GetJobResponse:
        """One job's state."""
        snap = await self._jobs.queries.get_job(request.job_id, await self._principal(context))
        return chat_pb2.GetJobResponse(job=snap.to_proto())

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Ctx
    ) -> chat_pb2.GetConversationResponse:
        """A conversation's messages."""
        msgs = await self._jobs.queries.get_conversation(
            request.conversation_id, await self._principal(context)
        )
        return chat_pb2.GetConversationResponse(
            conversation_id=request.conversation_id,
            messages=[common_pb2.ChatMessage(role=r, content=c) for r, c in msgs],
        )
