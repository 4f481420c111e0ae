"""The SSE frames of one relay ``ChatStream`` call, built once and written coalesced.

A reader task owned by ``RelayStream`` turns the core's messages into frames as they arrive: a
``chunk`` is one ``event: chunk``, and ``pieces`` (several texts the core batched into one message)
is one ``event: chunk`` per text with consecutive ids from the message's ``seq``, all in one piece.
The client's response takes everything buffered in one write when it wakes, paced like the network
path's streams (``facade.frames.Coalescer``): the first event after a quiet spell at once, later ones
at most once per window, the verdict at once.

After the first byte a failure is an in-band ``error`` event, never a clean-looking end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import grpc
import orjson

from ashao.v1 import relay_pb2
from facade.frames import Coalescer, FrameBuffer
from facade.status import decode

log = logging.getLogger("ashao.facade.relay")

CHUNK_FRAME = b'event: chunk\nid: %d\ndata: {"text":%b}\n\n'
VERDICT_FRAME = b'event: %b\nid: %d\ndata: {"envelope":%b,"signature":%b,"key_id":%b}\n\n'


class StreamCall(Protocol):
    """What RelayStream needs of a ``ChatStream`` call."""

    async def read(self) -> object:
        """The next message, or ``grpc.aio.EOF``."""

    def cancel(self) -> bool:
        """End the call."""


def verdict_frame(kind: bytes, seq: int, doc: relay_pb2.SignedDocument) -> bytes:
    """A ``done`` or ``error`` event carrying a signed envelope, passed through byte for byte."""
    return VERDICT_FRAME % (kind, seq, doc.body, orjson.dumps(doc.signature), orjson.dumps(doc.key_id))


def lost_frame(seq: int, detail: str) -> bytes:
    """The ``error`` event of a stream that broke after it began (unsigned: the core never saw it)."""
    envelope = {"error": "provider_error", "detail": f"the relay lost the answer: {detail}", "partial": True}
    return VERDICT_FRAME % (b"error", seq, orjson.dumps(envelope), b'""', b'""')


class RelayStream:
    """Async iterator of ready SSE bytes for one relay stream; ``aclose()`` ends the call."""

    def __init__(
        self, call: StreamCall, *, seq: int, coalescer: Coalescer, max_buffer_bytes: int = 1 << 20
    ) -> None:
        self._call = call
        self._seq = seq
        """The id of the last event buffered."""
        self._buf = FrameBuffer(coalescer)
        self._max_buffer = max_buffer_bytes
        self._reader: asyncio.Task[None] | None = None

    def __aiter__(self) -> RelayStream:
        return self

    async def __anext__(self) -> bytes:
        if self._reader is None:  # started by the first read, so a response never run leaks no task
            self._reader = asyncio.create_task(self._read(), name="ashao-relay-stream")
        data = await self._buf.next()
        if data is None:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Stop reading and end the call (a client that left stops the provider). Idempotent."""
        self._call.cancel()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        self._buf.end()

    async def _read(self) -> None:
        buf = self._buf
        try:
            while (msg := await self._call.read()) is not grpc.aio.EOF:
                assert isinstance(msg, relay_pb2.ChatStreamResponse)
                kind = msg.WhichOneof("event")
                if kind == "chunk":
                    self._seq = msg.seq
                    buf.push(CHUNK_FRAME % (msg.seq, orjson.dumps(msg.chunk)))
                elif kind == "pieces":
                    texts = msg.pieces.texts
                    if not texts:
                        continue
                    dumps, first = orjson.dumps, msg.seq
                    buf.push(b"".join([CHUNK_FRAME % (first + i, dumps(t)) for i, t in enumerate(texts)]))
                    self._seq = first + len(texts) - 1
                elif kind == "done" or kind == "error":
                    buf.end(verdict_frame(kind.encode(), msg.seq, getattr(msg, kind)))
                    return
                if buf.size > self._max_buffer:
                    buf.end(lost_frame(self._seq + 1, "this client fell too far behind the stream"))
                    return
            buf.end(lost_frame(self._seq + 1, "the stream from the core ended without a verdict"))
        except grpc.aio.AioRpcError as err:
            buf.end(lost_frame(self._seq + 1, decode(err).message))
        except Exception as exc:  # a bug here must still end the stream as a failure, not hang it
            log.error("relay stream failed", exc_info=exc)
            buf.end(lost_frame(self._seq + 1, "internal error"))
        finally:
            self._call.cancel()
