"""Dispatch latency: a send over HTTP → the assignment arriving on a worker's stream, and → the
first token reaching the caller over SSE.

A raw gRPC stream worker in this process (one per core) records when each assignment arrives, answers
one token and finishes the job at once; sends go through the HTTP facades in turn at a fixed rate.
Every figure is measured from the moment the send request starts (``issue_*``; the durable commit
included); ``accept_*`` is from the HTTP answer reaching the client (negative: the assignment was pushed
while the answer was on its way). ``ttft_*``: send request start → the first token event read from
``/api/chat/stream`` (opened on the facade that took the send, as soon as it answered).
"""

from __future__ import annotations

import asyncio
import time

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.httpclient import Connection, sse_events


async def _worker(
    grpc_addr: str,
    join_token: str,
    arrived: dict[str, float],
    count: int,
    ready: asyncio.Event,
    all_in: asyncio.Event,
) -> None:
    async with grpc.aio.insecure_channel(grpc_addr) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        reg = await stub.RegisterWorker(
            worker_pb2.RegisterWorkerRequest(name="bench", slots=64, join_token=join_token)
        )
        call = stub.Connect(metadata=(("authorization", f"Bearer {reg.worker_token}"),))
        await call.write(worker_pb2.ConnectRequest(hello=worker_pb2.WorkerHello(slots=64)))
        await call.read()  # welcome
        ready.set()
        try:
            while len(arrived) < count:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.HasField("assignment"):
                    jid = msg.assignment.job_id
                    arrived[jid] = time.perf_counter()
                    if len(arrived) >= count:
                        all_in.set()
                    batch = worker_pb2.TokenBatch(jobs=[worker_pb2.JobTokens(job_id=jid, tokens=["ok"])])
                    await call.write(worker_pb2.ConnectRequest(tokens=batch))
                    await call.write(worker_pb2.ConnectRequest(complete=worker_pb2.JobComplete(job_id=jid)))
        finally:
            call.cancel()


async def measure(
    http_addrs: list[str],
    grpc_addrs: list[str],
    join_token: str,
    rate: float,
    count: int,
    cpu: CpuMeter | None = None,
) -> dict[str, float]:
    """Send ``count`` jobs at ``rate``/s over ``http_addrs`` in turn, with a raw worker on each core
    (registered with ``join_token``, good for as many); figures in milliseconds."""
    arrived: dict[str, float] = {}
    readies = [asyncio.Event() for _ in grpc_addrs]
    all_in = asyncio.Event()
    workers = [
        asyncio.create_task(_worker(a, join_token, arrived, count, r, all_in))
        for a, r in zip(grpc_addrs, readies, strict=True)
    ]
    ready = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
    await asyncio.wait([ready, *workers], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    for w in workers:
        if w.done():
            w.result()  # (a worker that could not connect: its error)
    await asyncio.wait_for(ready, 30)
    if len(grpc_addrs) > 1:
        await asyncio.sleep(1.0)  # (each core's record of its worker reaches the others)
    addrs = [host_port(a) for a in http_addrs]
    conns = [Connection(*addrs[i % len(addrs)]) for i in range(8 * len(addrs))]
    issued: dict[str, float] = {}
    accepted: dict[str, float] = {}
    first_token: dict[str, float] = {}

    async def send(i: int) -> None:
        conn = conns[i % len(conns)]
        t0 = time.perf_counter()
        r = await conn.post_json("/api/chat/send", {"tier": "free", "content": f"bench {i}"})
        assert isinstance(r, dict)
        jid = r["jobId"]
        issued[jid] = t0
        accepted[jid] = time.perf_counter()
        async for data in sse_events(conn.host, conn.port, f"/api/chat/stream?jobId={jid}"):
            if b'"token"' in data:
                first_token[jid] = time.perf_counter()
                break

    if cpu is not None:
        cpu.start()
    start = time.perf_counter()
    sends = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sends.append(asyncio.create_task(send(i)))
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    await asyncio.wait_for(all_in.wait(), 30)
    usage = cpu.stop() if cpu is not None else {}
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for c in conns:
        await c.close()
    from_accept = [(arrived[j] - accepted[j]) * 1000 for j in accepted]
    from_issue = [(arrived[j] - issued[j]) * 1000 for j in issued]
    ttft = [(first_token[j] - issued[j]) * 1000 for j in first_token]
    return {
        "jobs": float(count),
        "issue_p50_ms": percentile(from_issue, 50),
        "issue_p99_ms": percentile(from_issue, 99),
        "accept_p50_ms": percentile(from_accept, 50),
        "accept_p99_ms": percentile(from_accept, 99),
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p99_ms": percentile(ttft, 99),
        "first_tokens": float(len(ttft)),
        **usage,
    }


def run(rate: float = 100.0, count: int = 1000) -> dict[str, float]:
    """Run the benchmark; figures in milliseconds."""
    with network() as net:
        return run_async(
            measure([net.http_addr], [net.grpc_addr], net.join_token(), rate, count, CpuMeter(net))
        )
