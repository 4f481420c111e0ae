"""Server-Sent Events responses: bytes built once upstream, one write per wake-up, bounded waits.

``SSEResponse`` is a plain ASGI response (no middleware buffering, no per-event objects). It writes
whatever its source hands it, notices a client that left (so its subscription is released at once,
not at the next write), and disconnects a client that stops reading for ``send_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ashao_common.supervise import Supervisor
from facade.connections import HTTP_CYCLE
from facade.frames import FrameBuffer

log = logging.getLogger("ashao.facade.sse")

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


class SendWatchdog:
    """Disconnects SSE clients whose socket has not taken a write for ``timeout_s``.

    One clock for every stream, rather than a timer armed and disarmed around each of the tens of
    thousands of writes a second a busy facade makes.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._streams: set[SSEResponse] = set()
        self._loops = Supervisor("ashao-sse-watchdog", {"watchdog": self._run})
        self.disconnected = 0
        """Streams cut for not reading."""

    def __len__(self) -> int:
        """Streams running now."""
        return len(self._streams)

    def start(self) -> None:
        """Start the clock (supervised)."""
        self._loops.start()

    async def stop(self) -> None:
        """Stop the clock. Idempotent."""
        await self._loops.stop()

    def add(self, stream: SSEResponse) -> None:
        """Watch ``stream`` while it runs."""
        self._streams.add(stream)

    def discard(self, stream: SSEResponse) -> None:
        """Stop watching ``stream``."""
        self._streams.discard(stream)

    async def _run(self) -> None:
        period = max(0.05, self.timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for stream in list(self._streams):
                since = stream.sending_since
                if since and now - since > self.timeout_s:
                    self.disconnected += 1
                    stream.abort()


class SocketSink:
    """An SSE response's socket, written beneath the ASGI layers (uvicorn's httptools cycle, once the
    response head has gone out through them): one ``transport.write`` of a chunk per wake-up. It takes
    writes only while uvicorn would (the transport is below its high-water mark, the client is still
    there, the response is not over); otherwise the response's task writes, and waits, as ever."""

    __slots__ = ("_cycle", "_flow", "_transport")

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle
        self._flow = cycle.flow
        self._transport = cycle.transport

    @classmethod
    def of(cls, scope: Scope) -> SocketSink | None:
        """The sink of a response whose head was sent chunked on uvicorn's httptools protocol, else None."""
        cycle = (scope.get("extensions") or {}).get(HTTP_CYCLE, {}).get("cycle")
        if cycle is None or getattr(cycle, "chunked_encoding", None) is not True:
            return None
        if not all(hasattr(cycle, a) for a in ("flow", "transport", "disconnected", "response_complete")):
            return None
        return cls(cycle)

    def writable(self) -> bool:
        """Whether uvicorn would write now without waiting."""
        c = self._cycle
        return not (self._flow.write_paused or c.disconnected or c.response_complete)

    def write(self, data: bytes) -> None:
        """One chunk of the chunked body."""
        self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))


class SSEResponse(Response):
    """Streams ``source`` (an async iterator of ready SSE bytes) as ``text/event-stream``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        source: AsyncIterator[bytes],
        *,
        watchdog: SendWatchdog,
        on_close: Callable[[], None] | None = None,
        on_client_gone: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
        buffer: FrameBuffer | None = None,
    ) -> None:
        """``buffer``: the frame buffer ``source`` reads, when its wake-ups may write to the client's
        socket directly (``SocketSink``; the server's protocol must offer it)."""
        # Like StreamingResponse: no body, so no Content-Length; the stream is chunked.
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})
        self._source = source
        self._watchdog = watchdog
        self._on_close = on_close
        self._on_client_gone = on_client_gone
        self._buffer = buffer
        self.sending_since = 0.0
        """Monotonic time the current write began (0 between writes)."""
        self._task: asyncio.Task[object] | None = None
        self._aborted = False

    def abort(self) -> None:
        """Give up on a client that stopped reading: the stream ends and the connection closes."""
        if self._task is not None and not self._aborted:
            self._aborted = True
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        listener = asyncio.create_task(self._listen(receive, gone), name="ashao-sse-listen")
        self._task = asyncio.current_task()
        self._watchdog.add(self)
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            if self._buffer is not None:
                self._buffer.direct = SocketSink.of(scope)
            async for chunk in self._source:
                if gone.is_set():
                    return
                self.sending_since = time.monotonic()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.sending_since = 0.0
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            # Our own watchdog cancelled the stalled write: that cancellation ends here.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            log.info("disconnected an SSE client that stopped reading")
        except OSError:  # the socket went away mid-write
            return
        finally:
            if self._buffer is not None:
                self._buffer.direct = None
            self._watchdog.discard(self)
            listener.cancel()
            await asyncio.wait([listener])  # (never swallows a cancellation of this task)
            aclose: Callable[[], Awaitable[None]] | None = getattr(self._source, "aclose", None)
            if aclose is not None:
                await aclose()
            if self._on_close is not None:
                self._on_close()

    async def _listen(self, receive: Receive, gone: asyncio.Event) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                if self._on_client_gone is not None:
                    self._on_client_gone()
                return
