"""Dispatch latency: a send over HTTP → the assignment arriving on a worker's stream, and → the
first token reaching the caller over SSE.

A raw gRPC stream worker in this process records when each assignment arrives, answers one token and
finishes the job at once; sends go through the HTTP facade at a fixed rate. Every figure is measured
from the moment the send request starts (``issue_*``; the durable commit included); ``accept_*`` is
from the HTTP answer reaching the client (negative: the assignment was pushed while the answer was on
its way). ``ttft_*``: send request start → the first token event read from ``/api/chat/stream``
(opened as soon as the send answered).
"""

from __future__ import annotations

import asyncio
import time

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from ashao_cli.devnet import LocalNetwork
from ashao_cli.operator import issue_join_token
from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.httpclient import Connection, sse_events


async def _run(net: LocalNetwork, rate: float, count: int) -> dict[str, float]:
    http_addr, grpc_addr = net.http_addr, net.grpc_addr
    join = await asyncio.to_thread(issue_join_token, grpc_addr, net.data_dir, label="bench dispatch")
    channel = grpc.aio.insecure_channel(grpc_addr)
    stub = worker_pb2_grpc.WorkerServiceStub(channel)
    reg = await stub.RegisterWorker(worker_pb2.RegisterWorkerRequest(name="bench", slots=64, join_token=join))
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
    first_token: dict[str, float] = {}

    async def send(i: int) -> None:
        t0 = time.perf_counter()
        r = await conns[i % len(conns)].post_json("/api/chat/send", {"tier": "free", "content": f"bench {i}"})
        assert isinstance(r, dict)
        jid = r["jobId"]
        issued[jid] = t0
        accepted[jid] = time.perf_counter()
        async for data in sse_events(host, port, f"/api/chat/stream?jobId={jid}"):
            if b'"token"' in data:
                first_token[jid] = time.perf_counter()
                break

    cpu = CpuMeter(net)
    cpu.start()
    start = time.perf_counter()
    sends = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sends.append(asyncio.create_task(send(i)))
    await asyncio.wait_for(asyncio.gather(*sends), 60)
    await asyncio.wait_for(wtask, 30)
    usage = cpu.stop()
    call.cancel()
    await channel.close()
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
        return run_async(_run(net, rate, count))
