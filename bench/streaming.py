"""Streaming capacity: N concurrent jobs each producing 50 tokens/s, every token checked.

Synthetic worker agents stamp each token with its emit time (``--synthetic-stamp``); SSE clients
check that every token arrives, in order, and record emit → receive latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson

from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.httpclient import Connection, sse_batches


async def measure(http_addrs: list[str], jobs: int, tokens_per_job: int, cpu: CpuMeter) -> dict[str, float]:
    """``jobs`` streams, sent and followed over ``http_addrs`` in turn."""
    apis = [Connection(*host_port(a)) for a in http_addrs]
    lags: list[float] = []
    stamps: list[int] = []
    received = 0
    out_of_order = 0
    complete = 0

    async def follow(api: Connection, job_id: str) -> None:
        nonlocal received, out_of_order, complete
        expect = 0
        path = f"/api/chat/stream?jobId={job_id}"
        async with contextlib.aclosing(sse_batches(api.host, api.port, path)) as it:
            async for batch in it:
                now = time.time_ns()
                for data in batch:
                    evt = orjson.loads(data)
                    if evt["type"] != "token":
                        if evt["type"] == "done" and expect == tokens_per_job:
                            complete += 1
                        return
                    index, _, stamp = evt["value"].strip().partition("@")
                    if int(index[3:]) != expect:
                        out_of_order += 1
                    expect += 1
                    received += 1
                    lags.append((now - int(stamp)) / 1e6)
                    stamps.append(int(stamp))

    # Each stream is opened right after its send, as a browser would, so no token waits for a client
    # that has not connected yet (that wait would be the load generator's, not the system's).
    t0 = time.perf_counter()
    start_ns = time.time_ns()
    cpu.start()
    followers = []
    for i in range(jobs):
        api = apis[i % len(apis)]
        r = await api.post_json("/api/chat/send", {"tier": "free", "content": f"stream {i}"})
        assert isinstance(r, dict)
        followers.append(asyncio.create_task(follow(api, r["jobId"])))
    ramped = time.time_ns()
    await asyncio.wait_for(asyncio.gather(*followers), 120)
    elapsed = time.perf_counter() - t0
    usage = cpu.stop()
    for api in apis:
        await api.close()
    # "steady": tokens emitted once every stream was open (the ramp's sends and opens are done)
    steady = [lag for lag, stamp in zip(lags, stamps, strict=True) if stamp > ramped]
    return {
        "jobs": float(jobs),
        "jobs_complete": float(complete),
        "tokens_received": float(received),
        "tokens_expected": float(jobs * tokens_per_job),
        "out_of_order": float(out_of_order),
        "tokens_per_s": received / elapsed,
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "ramp_s": (ramped - start_ns) / 1e9,
        "steady_lag_p50_ms": percentile(steady, 50),
        "steady_lag_p99_ms": percentile(steady, 99),
        **usage,
    }


def run(jobs: int = 500, rate: float = 50.0, seconds: float = 10.0, workers: int = 2) -> dict[str, float]:
    """``jobs`` concurrent streams at ``rate`` tokens/s for about ``seconds``."""
    per_job = int(rate * seconds)
    # A new worker starts on probation with a few jobs at once: here every job must run at once.
    with network({"ASHAO_WORKER_PROBATION_SLOTS": str(jobs)}) as net:
        for i in range(workers):
            net.start_worker(
                f"stream-{i}",
                "--backend",
                "synthetic",
                "--tokens-per-sec",
                str(rate),
                "--synthetic-tokens",
                str(per_job),
                "--synthetic-stamp",
                "--slots",
                str(jobs // workers + 1),
            )
        time.sleep(2.0)
        return run_async(measure([net.http_addr], jobs, per_job, CpuMeter(net)))
