"""The OpenAI-compatible chat against the network API: the same short jobs (16 tokens) three ways.

Real processes: core, facade, and synthetic worker agents emitting as fast as they can. Closed-loop
clients each ask for an answer and read it whole, then go again: ``network`` sends with
``/api/chat/send`` and reads ``/api/chat/stream``; ``openai_stream`` POSTs ``/v1/chat/completions``
with ``stream: true`` and reads its chunks to ``[DONE]``; ``openai_whole`` POSTs it without ``stream``
and reads the ``chat.completion``. Rounds alternate between the three on one network, so their figures
are comparable; each answer is checked (text and token count), and anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.httpclient import Connection, HttpError, sse_events

MODES = ("network", "openai_stream", "openai_whole")
TOKENS = 16
ANSWER = "".join(f"tok{i} " for i in range(TOKENS))
MESSAGES = [{"role": "user", "content": "short"}]


async def _network(conn: Connection, host: str, port: int) -> bool:
    r = await conn.post_json("/api/chat/send", {"tier": "free", "content": "short"})
    assert isinstance(r, dict)
    n = 0
    async for data in sse_events(host, port, f"/api/chat/stream?jobId={r['jobId']}"):
        evt = orjson.loads(data)
        if evt["type"] != "token":
            return evt["type"] == "done" and evt["tokens"] == n == TOKENS
        n += 1
    return False


async def _openai_stream(conn: Connection, host: str, port: int) -> bool:
    body = {
        "model": "ashao-free",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text: list[str] = []
    usage = 0
    async for data in sse_events(host, port, "/v1/chat/completions", body=body):
        if data == b"[DONE]":
            return "".join(text) == ANSWER and usage == TOKENS
        chunk = orjson.loads(data)
        if "error" in chunk:
            return False
        if chunk["choices"]:
            text.append(chunk["choices"][0]["delta"].get("content") or "")
        if chunk.get("usage"):
            usage = chunk["usage"]["completion_tokens"]
    return False


async def _openai_whole(conn: Connection, host: str, port: int) -> bool:
    r = await conn.post_json("/v1/chat/completions", {"model": "ashao-free", "messages": MESSAGES})
    assert isinstance(r, dict)
    return bool(r["choices"][0]["message"]["content"] == ANSWER and r["usage"]["completion_tokens"] == TOKENS)


_ASK = {"network": _network, "openai_stream": _openai_stream, "openai_whole": _openai_whole}


async def _round(http_addr: str, mode: str, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    host, port = host_port(http_addr)
    deadline = time.perf_counter() + seconds
    ask = _ASK[mode]
    done = errors = 0
    latencies: list[float] = []

    async def client() -> None:
        nonlocal done, errors
        conn = Connection(host, port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    ok = await ask(conn, host, port)
                except HttpError:
                    ok = False
                if ok:
                    done += 1
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1
        finally:
            await conn.close()

    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), seconds + 60)
    return done, errors, latencies


async def _run(http_addr: str, clients: int, seconds: float, rounds: int, cpu: CpuMeter) -> dict[str, float]:
    jobs = dict.fromkeys(MODES, 0)
    errors = dict.fromkeys(MODES, 0)
    elapsed = dict.fromkeys(MODES, 0.0)
    latencies: dict[str, list[float]] = {m: [] for m in MODES}
    cpu_pct: dict[str, dict[str, float]] = {m: {} for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            cpu.start()
            t0 = time.perf_counter()
            done, failed, lat = await _round(http_addr, mode, clients, seconds)
            elapsed[mode] += time.perf_counter() - t0
            for k, v in cpu.stop().items():
                cpu_pct[mode][k] = cpu_pct[mode].get(k, 0.0) + v / rounds
            jobs[mode] += done
            errors[mode] += failed
            latencies[mode] += lat
    out: dict[str, float] = {"clients": float(clients), "rounds": float(rounds)}
    for mode in MODES:
        out[f"{mode}_jobs_per_s"] = jobs[mode] / elapsed[mode]
        out[f"{mode}_p50_ms"] = percentile(latencies[mode], 50)
        out[f"{mode}_p99_ms"] = percentile(latencies[mode], 99)
        out[f"{mode}_errors"] = float(errors[mode])
        for k, v in cpu_pct[mode].items():
            out[f"{mode}_{k}"] = v
    return out


def run(clients: int = 64, seconds: float = 5.0, rounds: int = 2, workers: int = 2) -> dict[str, float]:
    """``rounds`` rounds of ``seconds`` per mode, alternating."""
    with network() as net:
        for i in range(workers):
            net.start_worker(
                f"bench-{i}",
                "--backend",
                "synthetic",
                "--tokens-per-sec",
                "0",
                "--synthetic-tokens",
                str(TOKENS),
                "--slots",
                "256",
            )
        time.sleep(2.0)
        return run_async(_run(net.http_addr, clients, seconds, rounds, CpuMeter(net)))
