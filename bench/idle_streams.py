"""Idle SSE streams held by one facade process: memory per stream and health-check latency."""

from __future__ import annotations

import asyncio
import time

from bench.common import host_port, network, percentile, rss_kib, run_async
from bench.httpclient import Connection


async def _open(host: str, port: int, job_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /api/chat/stream?jobId={job_id} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:100]
    return reader, writer


async def _run(http_addr: str, facade_pid: int, streams: int) -> dict[str, float]:
    host, port = host_port(http_addr)
    api = Connection(host, port)
    jobs = [
        await api.post_json("/api/chat/send", {"tier": "free", "content": f"idle {i}"}) for i in range(50)
    ]
    job_ids = [j["jobId"] for j in jobs if isinstance(j, dict)]
    await asyncio.sleep(0.5)
    before = rss_kib(facade_pid)
    conns = []
    sem = asyncio.Semaphore(200)

    async def one(i: int) -> None:
        async with sem:
            conns.append(await _open(host, port, job_ids[i % len(job_ids)]))

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(streams))), 300)
    opened_s = time.perf_counter() - t0
    await asyncio.sleep(1.0)
    after = rss_kib(facade_pid)
    lat = []
    for _ in range(50):
        t = time.perf_counter()
        await api.post_json("/api/chat/send", {"tier": "free", "content": "still alive?"})
        lat.append((time.perf_counter() - t) * 1000)
    for _, w in conns:
        w.close()
    await api.close()
    return {
        "streams": float(len(conns)),
        "open_s": opened_s,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_stream": (after - before) / max(1, len(conns)),
        "send_p50_ms_while_held": percentile(lat, 50),
        "send_p99_ms_while_held": percentile(lat, 99),
    }


def run(streams: int = 5000) -> dict[str, float]:
    """Hold ``streams`` idle SSE streams on one facade (jobs queued, no worker)."""
    with network() as net:
        facade = next(p for name, p in net.children if name == "facade")
        return run_async(_run(net.http_addr, facade.pid, streams))
