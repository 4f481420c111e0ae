"""Dispatch latency: a send accepted over HTTP → the assignment arriving on a worker's stream.

A raw gRPC stream worker in this process records when each assignment arrives and finishes the job
at once; sends go through the HTTP facade at a fixed rate.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from bench.common import host_port, network, percentile, run_async
from bench.httpclient import Connection


async def _run(http_addr: str, grpc_addr: str, rate: float, count: int) -> dict[str, float]:
    channel = grpc.aio.insecure_channel(grpc_addr)
    stub = worker_pb2_grpc.WorkerServiceStub(channel)
    reg = await stub.RegisterWorker(worker_pb2.RegisterWorkerRequest(name="bench", slots=64))
    call = stub.Connect(metadata=(("authorization", f"Bearer {reg.worker_token}"),))
    await call.write(worker_pb2.ConnectRequest(hello=worker_pb2.WorkerHello(slots=64)))
    await call.read()  # welcome
    arrived: dict[str, float] = {}

    async def worker() -> None:
        while len(arrived) < count:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            if msg.HasField("assignment"):
                jid = msg.assignment.job_id
                arrived[jid] = time.perf_counter()
                await call.write(
                    worker_pb2.ConnectRequest(
                        tokens=worker_pb2.TokenBatch(jobs=[worker_pb2.JobTokens(job_id=jid, tokens=["ok"])])
                    )
                )
                await call.write(worker_pb2.ConnectRequest(complete=worker_pb2.JobComplete(job_id=jid)))

    wtask = asyncio.create_task(worker())
    host, port = host_port(http_addr)
    conns = [Connection(host, port) for _ in range(8)]
    issued: dict[str, float] = {}
    accepted: dict[str, float] = {}

    async def send(i: int) -> None:
        t0 = time.perf_counter()
        r = await conns[i % len(conns)].post_json("/api/chat/send", {"tier": "free", "content": f"bench {i}"})
        assert isinstance(r, dict)
        issued[r["jobId"]] = t0
        accepted[r["jobId"]] = time.perf_counter()

    start = time.perf_counter()
    sends = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sends.append(asyncio.create_task(send(i)))
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    await asyncio.wait_for(wtask, 30)
    call.cancel()
    await channel.close()
    for c in conns:
        await c.close()
    from_accept = [(arrived[j] - accepted[j]) * 1000 for j in accepted]
    from_issue = [(arrived[j] - issued[j]) * 1000 for j in issued]
    return {
        "jobs": float(count),
        "accept_p50_ms": percentile(from_accept, 50),
        "accept_p99_ms": percentile(from_accept, 99),
        "issue_p50_ms": percentile(from_issue, 50),
        "issue_p99_ms": percentile(from_issue, 99),
    }


def run(rate: float = 100.0, count: int = 1000) -> dict[str, float]:
    """Run the benchmark; figures in milliseconds."""
    with network() as net:
        return run_async(_run(net.http_addr, net.grpc_addr, rate, count))
