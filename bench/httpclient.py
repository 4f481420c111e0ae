"""A lean HTTP/1.1 client for load generation: keep-alive JSON calls and SSE streams.

The load generator shares the two cores with the system under test, so it must cost as little as
possible per request and per event; a general-purpose client would be the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import orjson


class HttpError(Exception):
    """A non-2xx answer."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(b":")
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    if headers.get(b"transfer-encoding") == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]
    n = int(headers.get(b"content-length", b"0"))
    return await reader.readexactly(n)


class Connection:
    """One keep-alive connection for request/response calls."""

    def __init__(self, host: str, port: int, *, headers: bytes = b"") -> None:
        """``headers``: header lines (each ending in CRLF) sent with every request, e.g. a credential."""
        self.host = host
        self.port = port
        self._headers = headers
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()  # one request at a time on a keep-alive connection

    async def _ensure(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def post_json(self, path: str, payload: object) -> object:
        """POST ``payload`` as JSON; the decoded JSON answer (HttpError if not 2xx)."""
        async with self._lock:
            return await self._post(path, payload)

    async def _post(self, path: str, payload: object) -> object:
        body = orjson.dumps(payload)
        reader, writer = await self._ensure()
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path.encode(), self.host.encode(), len(body), self._headers, body)
        )
        status, headers = await _read_head(reader)
        data = await _read_body(reader, headers)
        if status >= 300:
            raise HttpError(status, data)
        return orjson.loads(data)

    async def close(self) -> None:
        """Close the socket."""
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


async def sse_events(
    host: str, port: int, path: str, *, last_event_id: str = "", body: object = None, headers: bytes = b""
) -> AsyncIterator[bytes]:
    """The ``data:`` payloads of an SSE stream, as they arrive (one connection per stream).

    With ``body`` the stream is opened by POSTing it as JSON (as the relay's /chat/stream wants).
    """
    async with contextlib.aclosing(
        sse_batches(host, port, path, last_event_id=last_event_id, body=body, headers=headers)
    ) as it:
        async for batch in it:
            for data in batch:
                yield data


async def sse_batches(
    host: str, port: int, path: str, *, last_event_id: str = "", body: object = None, headers: bytes = b""
) -> AsyncGenerator[list[bytes], None]:
    """Like ``sse_events``, but the payloads that arrived in one read come together (they arrived at
    the same moment, so a caller timing them needs one clock reading per batch)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        extra = (f"Last-Event-ID: {last_event_id}\r\n".encode() if last_event_id else b"") + headers
        if body is None:
            writer.write(
                b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n%s\r\n"
                % (path.encode(), host.encode(), extra)
            )
        else:
            payload = orjson.dumps(body)
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
                % (path.encode(), host.encode(), len(payload), extra, payload)
            )
        status, headers = await _read_head(reader)
        if status != 200:
            raise HttpError(status, await _read_body(reader, headers))
        chunked = headers.get(b"transfer-encoding") == b"chunked"
        raw = bytearray()  # received, still chunk-framed
        buf = b""  # de-chunked, not yet split into events
        while True:
            data = await reader.read(262144)  # whatever has arrived: one read for many events
            if not data:
                return
            if chunked:
                raw += data
                parts = []
                finished = False
                while (i := raw.find(b"\r\n")) >= 0:
                    size = int(raw[:i], 16)
                    if size == 0:
                        finished = True
                        break
                    end = i + 2 + size
                    if len(raw) < end + 2:
                        break
                    parts.append(bytes(raw[i + 2 : end]))
                    del raw[: end + 2]
                buf += b"".join(parts)
            else:
                buf += data
                finished = False
            frames = buf.split(b"\n\n")
            buf = frames.pop()
            batch = [
                line[6:] for frame in frames for line in frame.split(b"\n") if line.startswith(b"data: ")
            ]
            if batch:
                yield batch
            if finished:
                return
    finally:
        writer.close()
