"""The relay: what it adds to time-to-first-chunk, what it costs per token, how many streamed requests
it serves, and whether it holds many slow streams without lag.

A fast OpenAI-compatible upstream runs in a process of its own (bench/fast_upstream.py), so its cost
is counted apart. On one network (core + facade + one synthetic worker agent):

1. time to first chunk from the same upstream called directly and through the relay (facade -> core:
   auth, rate limit, ingress moderation, safety-ledger record, cascade), alternating request by
   request (``added_*``), and the relay's own ``x-ashao-overhead-ms`` header;
2. throughput: 32 closed-loop clients streaming 16-token answers through ``/chat/stream`` for
   ``seconds``; the CPU the core and the facade spend per token relayed (``relay_cpu_us_per_token``)
   beside the same figure for the network path (``network_cpu_us_per_token``: 32 clients of
   ``/api/chat/send`` + ``/api/chat/stream``, 16-token answers from the synthetic worker);
3. hold: 200 relay streams at once, 250 tokens each at 50 tokens/s; every token carries its emit time,
   and the client reports emit -> receive lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson

from bench.common import CpuMeter, host_port, network, percentile, run_async
from bench.fast_upstream import BURST_TOKENS, HOLD_TOKENS, fast_upstream
from bench.httpclient import Connection, sse_batches, sse_events

OVERHEAD = b"x-ashao-overhead-ms"


async def _first_chunk(host: str, port: int, path: str, body: object) -> float:
    """Seconds from opening the stream to its first chunk of text (the stream is then closed)."""
    t0 = time.perf_counter()
    async with contextlib.aclosing(sse_events(host, port, path, body=body)) as events:
        async for data in events:
            if data != b"[DONE]" and orjson.loads(data):
                return time.perf_counter() - t0
    raise RuntimeError(f"{path}: no chunk")


async def _overhead_header(host: str, port: int, body: object) -> float:
    """The relay's ``x-ashao-overhead-ms`` for one streamed request (read from the response head)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = orjson.dumps(body)
        writer.write(
            b"POST /chat/stream HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == OVERHEAD:
                return float(value)
        return float("nan")  # (a relay that does not say)
    finally:
        writer.close()


async def _latency(fh: str, fp: int, up: int, rounds: int) -> dict[str, float]:
    direct_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    relay_body = {"message": "hi", "max_tokens": 1024}
    direct, relayed, header = [], [], []
    for i in range(rounds + 20):  # the first 20 of each warm up
        d = await _first_chunk("127.0.0.1", up, "/v1/chat/completions", direct_body)
        r = await _first_chunk(fh, fp, "/chat/stream", relay_body)
        h = await _overhead_header(fh, fp, relay_body)
        if i >= 20:
            direct.append(d * 1000)
            relayed.append(r * 1000)
            header.append(h)
    return {
        "rounds": float(rounds),
        "direct_first_chunk_p50_ms": percentile(direct, 50),
        "relay_first_chunk_p50_ms": percentile(relayed, 50),
        "added_p50_ms": percentile(relayed, 50) - percentile(direct, 50),
        "added_p99_ms": percentile(relayed, 99) - percentile(direct, 99),
        "overhead_header_p50_ms": percentile(header, 50),
        "overhead_header_p99_ms": percentile(header, 99),
    }


async def _closed_loop(clients: int, seconds: float, one: object) -> tuple[int, int, int, float]:
    """(answers, tokens, errors, elapsed) of ``clients`` running ``one()`` back to back."""
    deadline = time.perf_counter() + seconds
    totals = [0, 0, 0]

    async def client(i: int) -> None:
        while time.perf_counter() < deadline:
            try:
                n = await one(i)  # type: ignore[operator]
            except Exception:
                totals[2] += 1
                continue
            totals[0] += 1
            totals[1] += n

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), seconds + 60)
    return totals[0], totals[1], totals[2], time.perf_counter() - t0


def _per_token(usage: dict[str, float], elapsed: float, tokens: int) -> float:
    """Core + facade CPU microseconds per token."""
    cpu_s = (usage["cpu_core_pct"] + usage["cpu_facade_pct"]) / 100 * elapsed
    return cpu_s / max(tokens, 1) * 1e6


async def _throughput(fh: str, fp: int, cpu: CpuMeter, clients: int, seconds: float) -> dict[str, float]:
    body = {"message": "hi", "max_tokens": 1024}

    async def relay_one(i: int) -> int:
        n, ended = 0, False
        async for data in sse_events(fh, fp, "/chat/stream", body=body):
            doc = orjson.loads(data)
            if "text" in doc:
                n += 1
            elif "envelope" in doc:
                ended = doc["envelope"].get("verdict") == "response"
                break
        if not ended or n != BURST_TOKENS:
            raise RuntimeError("incomplete relay answer")
        return n

    conns = [Connection(fh, fp) for _ in range(clients)]

    async def network_one(i: int) -> int:
        r = await conns[i].post_json("/api/chat/send", {"tier": "free", "content": "short"})
        assert isinstance(r, dict)
        n = 0
        async for data in sse_events(fh, fp, f"/api/chat/stream?jobId={r['jobId']}"):
            evt = orjson.loads(data)
            if evt["type"] == "token":
                n += 1
            elif evt["type"] == "done" and n == BURST_TOKENS:
                return n
            else:
                raise RuntimeError("incomplete network answer")
        raise RuntimeError("network stream ended early")

    out: dict[str, float] = {}
    for name, one in (("relay", relay_one), ("network", network_one)):
        await _closed_loop(clients, 1.0, one)  # warm up
        cpu.start()
        answers, tokens, errors, elapsed = await _closed_loop(clients, seconds, one)
        usage = cpu.stop()
        out[f"{name}_requests_per_s"] = answers / elapsed
        out[f"{name}_errors"] = float(errors)
        out[f"{name}_cpu_us_per_token"] = _per_token(usage, elapsed, tokens)
        out.update({f"{name}_{k}": v for k, v in usage.items()})
    for c in conns:
        await c.close()
    out["relay_vs_network_cpu_per_token"] = out["relay_cpu_us_per_token"] / out["network_cpu_us_per_token"]
    return out


async def _hold(fh: str, fp: int, streams: int) -> dict[str, float]:
    lags: list[float] = []
    complete = unstamped = 0

    async def one(i: int) -> None:
        nonlocal complete, unstamped
        n = 0
        body = {"message": f"hold {i}", "max_tokens": 1024}
        async for batch in sse_batches(fh, fp, "/chat/stream", body=body):
            now = time.time_ns()
            for data in batch:
                doc = orjson.loads(data)
                if "text" in doc:
                    stamp = doc["text"].strip().partition("@")[2]
                    if not stamp.isdigit():
                        unstamped += 1  # not a piece the upstream sent whole
                        continue
                    lags.append((now - int(stamp)) / 1e6)
                    n += 1
                elif "envelope" in doc:
                    complete += n == HOLD_TOKENS
                    return

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(streams))), 120)
    return {
        "hold_streams": float(streams),
        "hold_complete": float(complete),
        "hold_tokens": float(len(lags)),
        "hold_unstamped_pieces": float(unstamped),
        "hold_lag_p50_ms": percentile(lags, 50),
        "hold_lag_p99_ms": percentile(lags, 99),
        "hold_lag_max_ms": max(lags, default=float("nan")),
    }


def run(rounds: int = 200, clients: int = 32, seconds: float = 8.0, streams: int = 200) -> dict[str, float]:
    """The three phases, on one network."""
    with fast_upstream() as (up, up_pid):
        providers = [{"name": "direct", "base_url": f"http://127.0.0.1:{up}/v1", "model": "m"}]
        relay_env = {
            "ASHAO_RELAY_PROVIDERS": orjson.dumps(providers).decode(),
            "ASHAO_RELAY_FLOOR_REQUIRED": "false",
            "ASHAO_RELAY_RATE_PER_IP": "1000000",
            "ASHAO_RELAY_BURST_PER_IP": "1000000",
            "ASHAO_RELAY_RATE_PER_PRINCIPAL": "1000000",
            "ASHAO_RELAY_BURST_PER_PRINCIPAL": "1000000",
        }
        with network(relay_env) as net:
            net.start_worker(
                "bench-0",
                "--backend",
                "synthetic",
                "--tokens-per-sec",
                "0",
                "--synthetic-tokens",
                str(BURST_TOKENS),
                "--slots",
                "256",
            )
            time.sleep(2.0)
            fh, fp = host_port(net.http_addr)
            cpu = CpuMeter(net)
            cpu.add("upstream", up_pid)

            async def phases() -> dict[str, float]:
                return {
                    **await _latency(fh, fp, up, rounds),
                    **await _throughput(fh, fp, cpu, clients, seconds),
                    **await _hold(fh, fp, streams),
                }

            return run_async(phases())
