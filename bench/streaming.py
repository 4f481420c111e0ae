"""Streaming capacity: N concurrent jobs each producing 50 tokens/s, every token checked.

Synthetic worker agents stamp each token with its emit time (``--synthetic-stamp``); SSE clients
check that every token arrives, in order, and record emit → receive latency.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from bench.common import host_port, network, percentile
from bench.httpclient import Connection, sse_events


async def _run(http_addr: str, jobs: int, tokens_per_job: int) -> dict[str, float]:
    host, port = host_port(http_addr)
    api = Connection(host, port)
    lags: list[float] = []
    received = 0
    out_of_order = 0
    complete = 0

    async def follow(job_id: str) -> None:
        nonlocal received, out_of_order, complete
        expect = 0
        async for data in sse_events(host, port, f"/api/chat/stream?jobId={job_id}"):
            now = time.time_ns()
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

    ids = []
    for i in range(jobs):
        r = await api.post_json("/api/chat/send", {"tier": "free", "content": f"stream {i}"})
        assert isinstance(r, dict)
        ids.append(r["jobId"])
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(follow(j) for j in ids)), 120)
    elapsed = time.perf_counter() - t0
    await api.close()
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
    }


def run(jobs: int = 500, rate: float = 50.0, seconds: float = 10.0, workers: int = 2) -> dict[str, float]:
    """``jobs`` concurrent streams at ``rate`` tokens/s for about ``seconds``."""
    per_job = int(rate * seconds)
    with network() as net:
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
        return asyncio.run(_run(net.http_addr, jobs, per_job))
