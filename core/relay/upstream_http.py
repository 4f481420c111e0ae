"""A lean HTTP/1.1 client for streaming POSTs to one hosted upstream: keep-alive connections in a
bounded pool, the response body read as it arrives.

The relay asks an upstream for every request it serves, and the general-purpose client it used before
spent most of the core's time per relayed request in its own layers (a pool that polled every idle
connection per request, several wrappers per body chunk). This client does only what an
OpenAI-compatible streaming call needs: one request at a time per connection, ``Content-Length``
request bodies, responses framed by ``chunked``, ``Content-Length`` or the connection's end, plain
TCP or TLS. Callers put their own deadlines around every await.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 65536
"""The longest response head accepted."""
READ_BYTES = 65536


class UpstreamHTTPError(Exception):
    """The upstream's answer could not be read as HTTP (or the connection failed)."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response whose head has been read; ``body()`` yields its bytes as they arrive. ``aclose()``
    hands the connection back to the pool if the body was read to its end, else closes it."""

    def __init__(
        self, pool: UpstreamPool, conn: _Connection, status: int, headers: dict[bytes, bytes]
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status_code = status
        self.headers = headers
        self._complete = False

    async def body(self) -> AsyncIterator[bytes]:
        """The body's bytes (de-chunked), as they arrive."""
        conn = self._conn
        if conn is None:
            return
        reader = conn.reader
        if self.headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                # Hand over what has arrived of the chunk at once: a chunk may be a whole answer.
                async for data in _pieces(reader, size, "the connection closed mid-chunk"):
                    yield data
                if await reader.readexactly(2) != b"\r\n":
                    raise UpstreamHTTPError("malformed chunked body")
            self._complete = True
            return
        length = self.headers.get(b"content-length")
        if length is not None:
            async for data in _pieces(reader, int(length), "the connection closed before the body's end"):
                yield data
            self._complete = True
            return
        while data := await reader.read(READ_BYTES):  # framed by the connection's end (not reused)
            yield data

    async def aclose(self) -> None:
        """Release the connection (reused only after a whole body of a keep-alive response)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            keep = self._complete and self.headers.get(b"connection", b"").lower() != b"close"
            self._pool.release(conn, reuse=keep)


class UpstreamPool:
    """Keep-alive connections to the origin of ``url``, at most ``max_connections`` at once."""

    def __init__(self, url: str, *, max_connections: int, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nAccept-Encoding: identity\r\n{extra}"
        ).encode()
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    async def post(self, body: bytes) -> Response:
        """Send ``body`` and read the response's head (waiting for a connection if all are busy)."""
        await self._slots.acquire()
        try:
            while self._idle:  # a kept connection the server may have closed meanwhile: retried once
                conn = self._idle.pop()
                if not conn.usable:
                    conn.close()
                    continue
                try:
                    return await self._exchange(conn, body)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise  # the server began answering: not a connection it had closed
                    break
            return await self._exchange(await self._connect(), body)
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=self._ssl, limit=MAX_HEAD_BYTES
        )
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, body: bytes) -> Response:
        try:
            conn.writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body))
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except BaseException:
            conn.close()
            raise
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            conn.close()
            raise UpstreamHTTPError("malformed status line") from None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        return Response(self, conn, status, headers)

    def release(self, conn: _Connection, *, reuse: bool) -> None:
        """A response is done with ``conn``."""
        if reuse and not self._closed and conn.usable:
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    async def aclose(self) -> None:
        """Close the kept connections."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def _pieces(reader: asyncio.StreamReader, size: int, cut: str) -> AsyncIterator[bytes]:
    """The next ``size`` bytes of ``reader``, each piece as soon as it arrives (``cut``: the error if
    the connection ends first)."""
    while size > 0:
        data = await reader.read(min(size, READ_BYTES))
        if not data:
            raise UpstreamHTTPError(cut)
        size -= len(data)
        yield data
