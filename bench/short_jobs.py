"""Short jobs through the whole path: HTTP send → 16 tokens over SSE → done → persisted.

Real processes: core, facade, and synthetic worker agents emitting as fast as they can. Closed-loop
clients each send a job, read its SSE stream to ``done``, and go again.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.httpclient import Connection, sse_events


async def measure(
    http_addrs: list[str],
    clients: int,
    seconds: float,
    cpu: CpuMeter,
    *,
    tier: str = "free",
    credentials: list[bytes] | None = None,
) -> dict[str, float]:
    """``clients`` closed-loop clients (spread over ``http_addrs``; client ``i`` sends with the header
    lines ``credentials[i]`` if given) for ``seconds``."""
    deadline = time.perf_counter() + seconds
    done = 0
    tokens = 0
    latencies: list[float] = []
    errors = 0

    async def client(i: int) -> None:
        nonlocal done, tokens, errors
        host, port = host_port(http_addrs[i % len(http_addrs)])
        auth = credentials[i] if credentials else b""
        conn = Connection(host, port, headers=auth)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await conn.post_json("/api/chat/send", {"tier": tier, "content": "short"})
                assert isinstance(r, dict)
                n = 0
                path = f"/api/chat/stream?jobId={r['jobId']}"
                async for data in sse_events(host, port, path, headers=auth):
                    evt = orjson.loads(data)
                    if evt["type"] == "token":
                        n += 1
                    else:
                        if evt["type"] == "done" and evt["tokens"] == n == 16:
                            done += 1
                            tokens += n
                            latencies.append((time.perf_counter() - t0) * 1000)
                        else:
                            errors += 1
                        break
        finally:
            await conn.close()

    t0 = time.perf_counter()
    cpu.start()
    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), seconds + 60)
    elapsed = time.perf_counter() - t0
    usage = cpu.stop()
    await asyncio.sleep(0.5)  # let the last group commits land before counting what was persisted
    return {
        "clients": float(clients),
        "jobs": float(done),
        "jobs_per_s": done / elapsed,
        "tokens_per_s": tokens / elapsed,
        "job_p50_ms": percentile(latencies, 50),
        "job_p99_ms": percentile(latencies, 99),
        "errors": float(errors),
        **usage,
    }


def run(clients: int = 64, seconds: float = 10.0, workers: int = 2) -> dict[str, float]:
    """Closed-loop short jobs for ``seconds``."""
    with network() as net:
        for i in range(workers):
            net.start_worker(
                f"bench-{i}",
                "--backend",
                "synthetic",
                "--tokens-per-sec",
                "0",
                "--synthetic-tokens",
                "16",
                "--slots",
                "256",
            )
        time.sleep(2.0)
        result = run_async(measure([net.http_addr], clients, seconds, CpuMeter(net)))
        result["persisted_done_jobs"] = float(_count_done(net))
        return result


def _count_done(net: object) -> int:
    import sqlite3

    from ashao_cli.devnet import LocalNetwork

    assert isinstance(net, LocalNetwork)
    with sqlite3.connect(net.data_dir / "ashao.db") as db:
        row = db.execute(
            "SELECT COUNT(*) FROM jobs j JOIN messages m ON m.job_id = j.id AND m.role = 'assistant'"
            " WHERE j.state = 'done'"
        ).fetchone()
        return int(row[0])
