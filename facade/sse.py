"""Server-Sent Events responses: bytes built once upstream, one write per wake-up, bounded waits.

``SSEResponse`` is a plain ASGI response (no middleware buffering, no per-event objects). It writes
whatever its source hands it, notices a client that left (so its subscription is released at once,
not at the next write), and disconnects a client that stops reading for ``send_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("ashao.facade.sse")

SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


class SSEResponse(Response):
    """Streams ``source`` (an async iterator of ready SSE bytes) as ``text/event-stream``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        source: AsyncIterator[bytes],
        *,
        send_timeout_s: float,
        on_close: Callable[[], None] | None = None,
        on_client_gone: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        # Like StreamingResponse: no body, so no Content-Length; the stream is chunked.
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})
        self._source = source
        self._send_timeout = send_timeout_s
        self._on_close = on_close
        self._on_client_gone = on_client_gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        listener = asyncio.create_task(self._listen(receive, gone), name="ashao-sse-listen")
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            async for chunk in self._source:
                if gone.is_set():
                    return
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except TimeoutError:
                    log.info("disconnecting an SSE client that stopped reading")
                    return
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the socket went away mid-write
            return
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
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
