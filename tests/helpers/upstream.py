"""An OpenAI-compatible streaming upstream for tests: a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class FakeUpstream:
    """Streams ``words`` as chat-completion chunks; records every request body it gets."""

    def __init__(
        self,
        words: list[str],
        *,
        delay_s: float = 0.0,
        mode: str = "ok",
        first_delay_s: float = 0.0,
        headers_delay_s: float = 0.0,
    ) -> None:
        """``mode``: "ok", "fail" (HTTP 500), or "cut" (the stream stops mid-way without finishing);
        ``headers_delay_s`` holds back the status line (a queueing server), ``first_delay_s`` the first
        chunk after it."""
        self.words = words
        self.delay_s = delay_s
        self.mode = mode
        self.first_delay_s = first_delay_s
        self.headers_delay_s = headers_delay_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        """The headers of every request, in the order of ``requests``."""
        self.port = 0
        self.connections = 0
        """TCP connections accepted: a client that reuses its connections opens few."""
        self.abandoned = 0
        """Streams whose client went away before their end (a cancelled job must stop its request)."""

    async def _chat(self, request: Request) -> StreamingResponse | JSONResponse:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if not body.get("stream"):
            return JSONResponse({"error": "only streaming"}, status_code=400)
        if self.mode == "fail":
            return JSONResponse({"error": {"message": "upstream exploded"}}, status_code=500)
        if self.headers_delay_s:
            # Wait, but not past the client's leaving (a handler left sleeping would hold up shutdown).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.headers_delay_s):
                    while (await request.receive())["type"] != "http.disconnect":
                        pass

        async def gen() -> AsyncIterator[bytes]:
            finished = False
            try:
                async for part in answer():
                    yield part
                finished = True
            finally:
                if not finished:
                    self.abandoned += 1

        async def answer() -> AsyncIterator[bytes]:
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for i, w in enumerate(self.words):
                if self.mode == "cut" and i == len(self.words) // 2:
                    return
                chunk = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
                }
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            final = {
                "id": "c",
                "object": "chat.completion.chunk",
                "model": body["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield b"data: " + orjson.dumps(final) + b"\n\ndata: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeUpstream]:
        """Serve on 127.0.0.1 on a free port for the duration of the block."""
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        upstream = self

        class Counting(HttpToolsProtocol):
            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                upstream.connections += 1
                super().connection_made(transport)

        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", http=Counting))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            for _ in range(1000):  # uvicorn offers a flag, not an event, for "started"
                if server.started:
                    break
                await asyncio.sleep(0.01)
            yield self
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()


def providers(*ups: tuple[str, FakeUpstream], first_chunk_timeout_s: float = 2.0) -> str:
    return orjson.dumps(
        [
            {
                "name": n,
                "base_url": f"http://127.0.0.1:{u.port}/v1",
                "model": f"model-{n}",
                "first_chunk_timeout_s": first_chunk_timeout_s,
                "total_timeout_s": 10,
            }
            for n, u in ups
        ]
    ).decode()
