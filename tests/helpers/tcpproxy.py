"""A TCP forwarder on loopback that a test can cut and restore: a server that goes away (or stops
answering) without stopping the real one behind it."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``. ``cut()`` drops every connection and refuses new
    ones; ``freeze()`` keeps them open but passes nothing (a server that stopped answering);
    ``restore()`` forwards again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mode = "open"
        self._marker: bytes | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0

    async def start(self, host: str = "127.0.0.1") -> None:
        """Listen on a free port (``port``) of ``host`` (loopback unless a test's own address)."""
        self._server = await asyncio.start_server(self._accept, host, 0)
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]

    def address(self) -> tuple[str, int]:
        """Where clients connect."""
        return self.host, self.port

    def cut(self) -> None:
        """Close every forwarded connection; new ones are closed as soon as they are accepted."""
        self._mode = "cut"
        self._flowing.set()
        for w in list(self._writers):
            w.transport.abort()

    def freeze(self) -> None:
        """Stop passing bytes either way, keeping the connections open; new ones hang likewise."""
        self._mode = "frozen"
        self._flowing.clear()

    def lose_reply_to(self, marker: bytes) -> None:
        """The next client bytes containing ``marker`` reach the server, then the client's connection is
        cut before any reply: the client cannot tell whether what it sent took effect."""
        self._marker = marker

    def restore(self) -> None:
        """Forward again."""
        self._mode = "open"
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and drop everything."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode == "cut":
            writer.transport.abort()
            return
        try:
            await self._flowing.wait()
            if self._mode == "cut":
                raise ConnectionError("cut")
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except (OSError, ConnectionError):
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, client=writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            self._writers.difference_update((writer, up_writer))
            writer.transport.abort()
            up_writer.close()  # what was forwarded still reaches the server

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter | None = None,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                if self._mode == "cut":
                    return
                writer.write(data)
                if client is not None and self._marker is not None and self._marker in data:
                    self._marker = None
                    client.transport.abort()  # before the reply can come back
                    await writer.drain()
                    return
                await writer.drain()
