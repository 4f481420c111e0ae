"""Connections that cost the server without asking anything of it are bounded: a request head never
finished (slowloris) or too large, an idle keep-alive connection, and more connections from one
address than it may hold."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from facade import connections
from tests.helpers.rawhttp import RawConnection
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def guarded(tmp_path: Path, **settings: Any) -> AsyncIterator[Stack]:
    """A stack whose facade has short head and keep-alive bounds, and a small cap per address."""
    bounds: dict[str, Any] = {
        "header_timeout_s": 0.3,
        "keep_alive_s": 0.3,
        "max_connections_per_ip": 3,
        "max_header_bytes": 16384,
    }
    s = await start_stack(tmp_path, **{**bounds, **settings})
    try:
        yield s
    finally:
        await stop_stack(s)


def open_by_ip(s: Stack) -> dict[str, int]:
    """The facade's count of open connections by address."""
    counts: dict[str, int] = s.facade._server.config.http.by_ip
    return counts


async def test_a_request_head_never_finished_is_disconnected(tmp_path: Path) -> None:
    async with guarded(tmp_path) as s:
        silent = await RawConnection.open(s.facade.port)
        slow = await RawConnection.open(s.facade.port)
        try:
            await slow.send(b"GET /api/sta")  # half a request line, then nothing
            assert await slow.until_closed_by_server() == b""
            assert await silent.until_closed_by_server() == b""  # connected, never said a word
        finally:
            silent.close()
            slow.close()
        assert (await s.http.get("/api/stats")).status_code == 200


async def test_the_next_request_head_on_a_kept_alive_connection_is_bounded_too(tmp_path: Path) -> None:
    async with guarded(tmp_path, keep_alive_s=30) as s:
        conn = await RawConnection.open(s.facade.port)
        try:
            assert (await conn.get("/api/stats"))[0] == 200
            await conn.send(b"GET /api/stats HTTP/1.1\r\nHost: t\r\n")  # the blank line never comes
            assert await conn.until_closed_by_server() == b""
        finally:
            conn.close()


async def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async with guarded(tmp_path, header_timeout_s=30) as s:
        conn = await RawConnection.open(s.facade.port)
        try:
            assert (await conn.get("/api/stats"))[0] == 200
            assert await conn.until_closed_by_server() == b""
        finally:
            conn.close()


async def test_a_request_head_past_the_limit_is_431_and_closed(tmp_path: Path) -> None:
    async with guarded(tmp_path, header_timeout_s=30) as s:
        conn = await RawConnection.open(s.facade.port)
        try:
            await conn.send(b"GET /api/stats HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 20000)
            answer = await conn.until_closed_by_server()
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        finally:
            conn.close()
        r = await s.http.get("/api/stats", headers={"X-Pad": "a" * 8000})  # within the limit
        assert r.status_code == 200


async def test_connections_past_the_per_address_cap_are_closed_and_the_first_ones_still_work(
    tmp_path: Path,
) -> None:
    async with guarded(tmp_path, header_timeout_s=30, keep_alive_s=30) as s:
        port = s.facade.port
        first = [await RawConnection.open(port) for _ in range(3)]
        try:
            for conn in first:
                assert (await conn.get("/api/stats"))[0] == 200
            extra = await RawConnection.open(port)
            try:
                await extra.send(b"GET /api/stats HTTP/1.1\r\nHost: t\r\n\r\n")
                assert await extra.until_closed_by_server() == b""  # no answer: closed at once
            finally:
                extra.close()
            for conn in first:
                assert (await conn.get("/api/stats"))[0] == 200
        finally:
            for conn in first:
                conn.close()
        await eventually(lambda: not open_by_ip(s))  # once they are gone...
        again = await RawConnection.open(port)  # ...the address may connect again
        try:
            assert (await again.get("/api/stats"))[0] == 200
        finally:
            again.close()


async def test_the_rest_of_a_refused_body_is_read_for_a_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "DISCARD_S", 0.3)
    async with guarded(tmp_path, header_timeout_s=30, keep_alive_s=30) as s:
        conn = await RawConnection.open(s.facade.port)
        try:
            await conn.send(
                b"POST /api/chat/send HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (1 << 40)
            )
            status, _ = await conn.response()
            assert status == 413  # answered at once; the client goes on sending its terabyte regardless
            chunk = b"x" * 65536
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                for _ in range(200_000):  # bounded; the server stops reading long before
                    await conn.send(chunk)
            assert await conn.until_closed_by_server() == b""
        finally:
            conn.close()


async def test_every_connection_sends_its_writes_at_once(tmp_path: Path) -> None:
    # (A response's head and body are written apart; with Nagle's algorithm on, the body would wait for
    # the client's delayed acknowledgement of the head on every kept-alive request.)
    async with guarded(tmp_path, header_timeout_s=30, keep_alive_s=30) as s:
        conn = await RawConnection.open(s.facade.port)
        try:
            assert (await conn.get("/api/stats"))[0] == 200
            protocols = list(s.facade._server.server_state.connections)
            assert protocols
            for protocol in protocols:
                sock = protocol.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            conn.close()


async def test_an_upgrade_request_is_counted_and_uncounted_like_any_other(tmp_path: Path) -> None:
    # (The facade serves no WebSocket: a connection handed to another protocol would never be
    # uncounted, and its address would creep towards the cap.)
    async with guarded(tmp_path, header_timeout_s=30, keep_alive_s=30) as s:
        for _ in range(2):
            conn = await RawConnection.open(s.facade.port)
            try:
                await conn.send(
                    b"GET /api/stats HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                status, _ = await conn.response()
                assert status == 200  # answered as plain HTTP
            finally:
                conn.close()
        await eventually(lambda: not open_by_ip(s))


async def test_a_trusted_proxy_is_not_capped(tmp_path: Path) -> None:
    # Behind a trusted proxy (this test, on 127.0.0.1) every client comes from the proxy's address.
    async with guarded(tmp_path, header_timeout_s=30, keep_alive_s=30, trust_forwarded=True) as s:
        conns = [await RawConnection.open(s.facade.port) for _ in range(5)]  # past the cap of 3
        try:
            for conn in conns:
                assert (await conn.get("/api/stats"))[0] == 200
        finally:
            for conn in conns:
                conn.close()
