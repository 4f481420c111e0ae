"""The reference the hold benchmark measures ashao against: gRPC in, SSE out, nothing else.

``python -m bench.bare_relay --grpc HOST:PORT --http HOST:PORT`` serves ``WorkerService.Connect`` (the
load generator of ``bench.loadworker`` connects to it as to a core) and ``GET /stream?job=ID``. Opening
a stream pushes an assignment for ``ID`` to a connected worker; every ``TokenBatch`` that comes back
is written out at once, one write per client per batch, with the same SSE bytes the network API
sends (``id`` + ``{"type":"token","value"}``, then ``done``). No auth, no store, no bounds, no
coalescing beyond the batches it is given: the least a relay of these tokens can cost in Python.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import Any

import grpc
import orjson

from ashao.v1 import worker_pb2, worker_pb2_grpc

TOKEN_FRAME = b'id: %d\ndata: {"type":"token","value":%b}\n\n'
DONE_FRAME = b'id: %d\ndata: {"type":"done","tokens":%d}\n\n'
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class _Client:
    __slots__ = ("done", "seq", "transport")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.seq = 0
        self.done = asyncio.get_running_loop().create_future()


class Relay(worker_pb2_grpc.WorkerServiceServicer):
    """Connect streams in, SSE clients out."""

    def __init__(self) -> None:
        self.clients: dict[str, _Client] = {}
        self.workers: list[asyncio.Queue[worker_pb2.ConnectResponse]] = []
        self._rr = itertools.count()

    async def Connect(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]
        """hello → welcome; assignments out; token batches in, written to their clients."""
        await context.read()
        await context.write(worker_pb2.ConnectResponse(welcome=worker_pb2.Welcome(worker_id="bare")))
        outbox: asyncio.Queue[worker_pb2.ConnectResponse] = asyncio.Queue()
        self.workers.append(outbox)

        async def write() -> None:
            while True:
                await context.write(await outbox.get())

        writer = asyncio.create_task(write())
        clients = self.clients
        dumps = orjson.dumps
        try:
            while (msg := await context.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("msg") != "tokens":
                    continue
                for jt in msg.tokens.jobs:
                    c = clients.get(jt.job_id)
                    if c is None:
                        continue
                    seq = jt.offset + 1
                    body = b"".join([TOKEN_FRAME % (seq + i, dumps(t)) for i, t in enumerate(jt.tokens)])
                    c.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
                    c.seq = seq + len(jt.tokens) - 1
                for done in msg.tokens.completed:
                    c = clients.pop(done.job_id, None)
                    if c is None:
                        continue
                    body = DONE_FRAME % (c.seq + 1, c.seq)
                    c.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
                    c.done.set_result(None)
        finally:
            writer.cancel()
            self.workers.remove(outbox)

    async def serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """``GET /stream?job=ID``: the job's tokens as SSE, then ``done``."""
        try:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # a port probe
                return
            path = head.split(b" ", 2)[1].decode()
            job_id = path.partition("job=")[2]
            client = _Client(writer.transport)  # type: ignore[arg-type]
            self.clients[job_id] = client
            writer.write(HEAD)
            outbox = self.workers[next(self._rr) % len(self.workers)]
            outbox.put_nowait(worker_pb2.ConnectResponse(assignment=worker_pb2.Assignment(job_id=job_id)))
            await client.done
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()


async def _main(grpc_addr: str, http_addr: str) -> None:
    relay = Relay()
    server = grpc.aio.server()
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(relay, server)
    server.add_insecure_port(grpc_addr)
    await server.start()
    host, _, port = http_addr.rpartition(":")
    http = await asyncio.start_server(relay.serve_http, host, int(port), backlog=4096)
    print(f"bare relay: gRPC on {grpc_addr}, HTTP on {http_addr}", flush=True)
    async with http:
        await http.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    p = argparse.ArgumentParser(prog="python -m bench.bare_relay")
    p.add_argument("--grpc", required=True)
    p.add_argument("--http", required=True)
    args = p.parse_args(argv)
    import uvloop

    try:
        uvloop.run(_main(args.grpc, args.http))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
