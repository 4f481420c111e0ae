"""Sends relayed to the core over one ``SendMany`` stream instead of a unary call apiece.

A unary gRPC call costs several times what a message on an open stream costs, at both ends; at
hundreds of sends a second that difference is most of the facade's and the core's CPU. Sends that
are ready together go in one message, and the core answers several at once.

If the stream breaks, the sends in flight fail as UNAVAILABLE (503): their outcome is unknown to
the facade, exactly as with a unary call cut by a network failure.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator

import grpc

from ashao.v1 import chat_pb2, chat_pb2_grpc
from ashao_common.metrics import Histogram
from ashao_common.supervise import Supervisor
from ashao_common.tracing import Attributes, Tracer
from facade.status import CoreCallFailed, CoreError, from_call_error

log = logging.getLogger("ashao.facade.sends")

SEND_SPAN = "ashao.v1.ChatService/SendMessage"
_RPC: Attributes = {"rpc.system": "grpc", "rpc.service": "ashao.v1.ChatService", "rpc.method": "SendMessage"}
_UNREACHABLE = CoreError(grpc.StatusCode.UNAVAILABLE, "the coordinator is unreachable")
_STOPPING = CoreError(grpc.StatusCode.UNAVAILABLE, "the facade is stopping")
DRAIN_S = 1.0
"""How long a stopping sender lets the sends in flight get their answers."""
MAX_BATCH_BYTES = 3 * 1024 * 1024
"""Largest ``SendManyRequest`` put on the stream (the core refuses messages past its receive limit, 4 MiB
by gRPC's default, and refusing one ends the stream for every send on it)."""
MAX_SEND_BYTES = 1024 * 1024
"""Largest single send relayed; a larger one is refused before it reaches the stream."""
_TOO_LARGE = CoreError(
    grpc.StatusCode.INVALID_ARGUMENT, f"body: too large to relay (at most {MAX_SEND_BYTES} bytes)"
)


class _Outbox:
    """The sends waiting for one stream to carry them. Each stream has its own: the request iterator
    of a broken stream may still be waiting inside grpc, and must never take a later stream's sends."""

    __slots__ = ("closed", "queued_bytes", "ready", "sends", "sizes")

    def __init__(self) -> None:
        self.sends: list[chat_pb2.RelayedSend] = []
        self.sizes: list[int] = []
        self.queued_bytes = 0
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, send: chat_pb2.RelayedSend, size: int | None = None) -> None:
        """Queue ``send`` (``size``: its serialised size, if known) for the stream."""
        size = send.ByteSize() if size is None else size
        self.sends.append(send)
        self.sizes.append(size)
        self.queued_bytes += size + 8  # with the field's tag and length
        self.ready.set()

    def _take(self) -> list[chat_pb2.RelayedSend]:
        """The oldest sends that fit one message of at most MAX_BATCH_BYTES (at least one)."""
        if self.queued_bytes <= MAX_BATCH_BYTES:  # the usual case: everything queued fits
            batch, self.sends, self.sizes, self.queued_bytes = self.sends, [], [], 0
            return batch
        total, n = 0, 0
        for size in self.sizes:
            if n and total + size + 8 > MAX_BATCH_BYTES:
                break
            total += size + 8
            n += 1
        batch = self.sends[:n]
        del self.sends[:n], self.sizes[:n]
        self.queued_bytes -= total
        return batch

    def close(self) -> None:
        """The stream is over: its iterator ends (what is still queued was failed with it)."""
        self.closed = True
        self.ready.set()

    async def requests(self) -> AsyncIterator[chat_pb2.SendManyRequest]:
        """The stream's messages: every send queued since the last one, together."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.closed:
                return
            while self.sends:  # several messages when what is queued would make one too large
                yield chat_pb2.SendManyRequest(sends=self._take())
                if self.closed:
                    return


class Sender:
    """The SendMany stream. ``start()`` it, ``shutdown()`` it."""

    def __init__(
        self,
        stub: chat_pb2_grpc.ChatServiceAsyncStub,
        *,
        connect_wait_s: float = 3.0,
        metadata: tuple[tuple[str, str], ...] = (),
        tracer: Tracer | None = None,
    ) -> None:
        """``tracer`` (tracing on): each send gets a client span whose context travels with it."""
        self._stub = stub
        self._tracer = tracer
        self.seconds = Histogram()
        """How long each send relayed to the core took to be answered."""
        self._metadata = metadata
        self._connect_wait_s = connect_wait_s
        """How long a send waits for the stream to the core to be (re)established before failing."""
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[chat_pb2.SendMessageResponse]] = {}
        self._outbox = _Outbox()
        self._up = asyncio.Event()
        self._closing = False
        self._loops = Supervisor("ashao-facade-sends", {"send": self._run})

    @property
    def connected(self) -> bool:
        """Whether the send stream to the core is up."""
        return self._up.is_set()

    @property
    def restarts(self) -> int:
        """Times the send loop was restarted after an unexpected failure."""
        return self._loops.restarts

    def start(self) -> None:
        """Open the stream, and keep it open (supervised)."""
        self._loops.start()

    async def shutdown(self) -> None:
        """Refuse new sends, let those in flight get their answers (briefly), then stop; whatever is
        still unanswered fails as UNAVAILABLE. Idempotent."""
        self._closing = True
        in_flight = [f for f in self._waiting.values() if not f.done()]
        if in_flight and self._up.is_set():
            await asyncio.wait(in_flight, timeout=DRAIN_S)
        await self._loops.stop()
        self._fail_all()

    async def send(
        self, request: chat_pb2.SendMessageRequest, *, credential: str, client_ip: str, wait_s: float
    ) -> chat_pb2.SendMessageResponse:
        """Relay one send for an end user; CoreCallFailed carries the core's refusal."""
        if self._closing:
            raise CoreCallFailed(_STOPPING)
        if not self._up.is_set():  # (re)connecting: wait a little, as a unary call would
            try:
                async with asyncio.timeout(min(wait_s, self._connect_wait_s)):
                    await self._up.wait()
            except TimeoutError:
                raise CoreCallFailed(_UNREACHABLE) from None
        relayed = chat_pb2.RelayedSend(
            id=next(self._ids), send=request, credential=credential, client_ip=client_ip
        )
        tracer = self._tracer
        if tracer is None:
            return await self._relay(relayed, wait_s)
        with tracer.active(tracer.start(SEND_SPAN, kind="client", attributes=_RPC)) as span:
            relayed.trace_context.update(tracer.inject(span))  # the core's span of the send continues it
            return await self._relay(relayed, wait_s)

    async def _relay(self, relayed: chat_pb2.RelayedSend, wait_s: float) -> chat_pb2.SendMessageResponse:
        size = relayed.ByteSize()
        if size > MAX_SEND_BYTES:  # the core would refuse it, and with it the stream everyone shares
            raise CoreCallFailed(_TOO_LARGE)
        send_id = relayed.id
        future: asyncio.Future[chat_pb2.SendMessageResponse] = asyncio.get_running_loop().create_future()
        self._waiting[send_id] = future
        self._outbox.put(relayed, size)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(wait_s):
                return await future
        except TimeoutError:
            raise CoreCallFailed(
                CoreError(grpc.StatusCode.DEADLINE_EXCEEDED, "the coordinator did not answer in time")
            ) from None
        finally:
            self._waiting.pop(send_id, None)
            self.seconds.observe(time.perf_counter() - started)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            # A fresh outbox per stream: nothing queued survives into a new stream (those callers were
            # failed with the old one).
            outbox = self._outbox = _Outbox()
            call = self._stub.SendMany(outbox.requests(), metadata=self._metadata, wait_for_ready=True)

            try:
                await call.initial_metadata()
                self._up.set()
                backoff = 0.05
                async for response in call:
                    for result in response.results:
                        future = self._waiting.get(result.id)
                        if future is None or future.done():
                            continue
                        if result.HasField("sent"):
                            future.set_result(result.sent)
                        else:
                            future.set_exception(CoreCallFailed(from_call_error(result.error)))
                log.warning("the core ended the send stream; reopening")
            except grpc.aio.AioRpcError as err:
                log.warning("send stream to the core failed (%s); reopening", err.code().name)
            finally:
                self._up.clear()
                outbox.close()
                call.cancel()
                self._fail_all()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _fail_all(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CoreCallFailed(_UNREACHABLE))
        self._waiting.clear()
