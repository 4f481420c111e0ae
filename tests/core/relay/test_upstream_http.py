"""The relay's upstream HTTP client against a raw server on loopback: every body framing, trickled
bytes, kept connections, and a kept connection the server closed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.relay.upstream_http import UpstreamHTTPError, UpstreamPool

pytestmark = pytest.mark.timeout(30)

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]
"""Answers one request (its head and body already read); returns whether to keep the connection."""


@contextlib.asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[int, list[bytes]]]:
    bodies: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                bodies.append(await reader.readexactly(length))
                if not await answer(reader, writer):
                    break
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1], bodies
    finally:
        srv.close()


async def read_all(pool: UpstreamPool, body: bytes = b"{}") -> tuple[int, bytes]:
    r = await pool.post(body)
    try:
        return r.status_code, b"".join([d async for d in r.body()])
    finally:
        await r.aclose()


async def test_chunked_trickled_content_length_and_closing_bodies() -> None:
    kinds = ["chunked", "length", "close"]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        kind = kinds.pop(0)
        if kind == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            await writer.drain()
            await asyncio.sleep(0.01)  # the rest of the chunk comes in a later read
            writer.write(b"lo\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
            return True
        if kind == "length":
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nbody")
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        return False

    async with server(answer) as (port, bodies):
        pool = UpstreamPool(f"http://127.0.0.1:{port}/v1/x", max_connections=2, headers={"A": "b"})
        try:
            assert await read_all(pool, b'{"n":1}') == (200, b"hello world")
            assert await read_all(pool) == (201, b"body")
            assert await read_all(pool) == (200, b"until the end")
        finally:
            await pool.aclose()
        assert bodies[0] == b'{"n":1}'


async def test_a_kept_connection_closed_by_the_server_is_replaced() -> None:
    served = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        nonlocal served
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes after each answer, without saying so

    async with server(answer) as (port, _):
        pool = UpstreamPool(f"http://127.0.0.1:{port}/", max_connections=1, headers={})
        try:
            for _ in range(3):
                assert await read_all(pool) == (200, b"ok")
        finally:
            await pool.aclose()
        assert served == 3


async def test_a_malformed_answer_is_an_error_and_frees_the_slot() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"NONSENSE\r\n\r\n")
        return False

    async with server(answer) as (port, _):
        pool = UpstreamPool(f"http://127.0.0.1:{port}/", max_connections=1, headers={})
        try:
            for _ in range(2):  # the slot was given back: the second call does not wait forever
                with pytest.raises(UpstreamHTTPError):
                    await pool.post(b"{}")
        finally:
            await pool.aclose()
