"""HTTP/1.1 over a bare socket, for tests of what a server does with a connection (slow, idle, many)."""

from __future__ import annotations

import asyncio


class RawConnection:
    """One TCP connection to 127.0.0.1:``port``; every read is bounded by ``timeout`` seconds."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout

    @classmethod
    async def open(cls, port: int, timeout: float = 10.0) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, timeout)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def get(self, path: str) -> tuple[int, bytes]:
        """A keep-alive GET on this connection: (status, body)."""
        await self.send(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())
        return await self.response()

    async def response(self) -> tuple[int, bytes]:
        """The next response: (status, body); the body is read by its Content-Length."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), self.timeout)
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(self.reader.readexactly(length), self.timeout)
        return status, body

    async def until_closed_by_server(self) -> bytes:
        """Wait (at most ``timeout``, else TimeoutError) for the server to end the connection, at EOF
        or by a reset; returns what it sent before."""
        got = b""
        try:
            async with asyncio.timeout(self.timeout):
                while data := await self.reader.read(65536):
                    got += data
        except (ConnectionResetError, BrokenPipeError):
            pass
        return got

    def close(self) -> None:
        self.writer.close()
