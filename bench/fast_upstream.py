"""A fast OpenAI-compatible streaming upstream for the relay benchmark, in a process of its own.

It answers ``POST /v1/chat/completions`` (streamed) with canned ``chat.completion.chunk`` events on
keep-alive connections, costing as little as it can per request so that the figures are the relay's:

- a message starting ``hold`` is answered ``HOLD_TOKENS`` tokens at ``HOLD_RATE`` tokens/s, each
  token stamped with its emission time (``tok7@<ns>``) so the client measures emit -> receive lag;
- anything else gets ``BURST_TOKENS`` tokens at once, in one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import socket
import time
from collections.abc import Iterator

import orjson

BURST_TOKENS = 16
HOLD_RATE = 50.0
HOLD_TOKENS = 250
MAX_HEAD = 65536


def _event(text: str) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"connection: keep-alive\r\n\r\n"
)
FINAL = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":%d}}\n\ndata: [DONE]\n\n'
)
BURST = (
    HEAD
    + _chunked(b"".join(_event(f"tok{i} ") for i in range(BURST_TOKENS)) + FINAL % BURST_TOKENS)
    + b"0\r\n\r\n"
)


async def _hold(writer: asyncio.StreamWriter) -> None:
    writer.write(HEAD)
    start = time.monotonic()
    for i in range(HOLD_TOKENS):
        delay = start + i / HOLD_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(_chunked(_event(f"tok{i}@{time.time_ns()} ")))
    writer.write(_chunked(FINAL % HOLD_TOKENS) + b"0\r\n\r\n")
    await writer.drain()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = orjson.loads(await reader.readexactly(min(length, MAX_HEAD)))
            message = body["messages"][-1]["content"]
            if message.startswith("hold"):
                await _hold(writer)
            else:
                writer.write(BURST)
    writer.close()


def _main(sock: socket.socket) -> None:
    import uvloop

    async def run() -> None:
        server = await asyncio.start_server(_serve, sock=sock, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(run())


@contextlib.contextmanager
def fast_upstream() -> Iterator[tuple[int, int]]:
    """Run the upstream in a child process on a free loopback port: (port, pid)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_main, args=(sock,), daemon=True)
    proc.start()
    sock.close()
    try:
        assert proc.pid is not None
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.join(5)
