"""What the relay adds to time-to-first-chunk: the same OpenAI-compatible upstream called directly,
and through facade → core (auth, rate limit, ingress moderation, safety-ledger record, cascade),
alternating request by request so both see the same machine conditions.

The upstream answers at once, so the difference is the relay's own cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import orjson

from ashao_cli.devnet import LocalNetwork
from bench.common import host_port, percentile, run_async
from bench.httpclient import sse_events
from tests.helpers.net import free_port
from tests.helpers.upstream import FakeUpstream


async def _first_chunk(host: str, port: int, path: str, body: object) -> float:
    """Seconds from opening the stream to its first chunk of text (the stream is then closed)."""
    t0 = time.perf_counter()
    async with contextlib.aclosing(sse_events(host, port, path, body=body)) as events:
        async for data in events:
            if data != b"[DONE]" and orjson.loads(data):
                return time.perf_counter() - t0
    raise RuntimeError(f"{path}: no chunk")


async def _run(rounds: int) -> dict[str, float]:
    words = ["The ", "relay ", "adds ", "little."]
    async with FakeUpstream(words).running() as up:
        with tempfile.TemporaryDirectory(prefix="ashao-bench-") as tmp:
            providers = [{"name": "direct", "base_url": f"http://127.0.0.1:{up.port}/v1", "model": "m"}]
            net = LocalNetwork(
                data_dir=Path(tmp),
                http_addr=f"127.0.0.1:{free_port()}",
                grpc_addr=f"127.0.0.1:{free_port()}",
                quiet=True,
                extra_env={
                    "ASHAO_RELAY_PROVIDERS": orjson.dumps(providers).decode(),
                    "ASHAO_RELAY_FLOOR_REQUIRED": "false",
                    "ASHAO_RELAY_RATE_PER_IP": "100000",
                    "ASHAO_RELAY_BURST_PER_IP": "100000",
                    "ASHAO_RELAY_RATE_PER_PRINCIPAL": "100000",
                    "ASHAO_RELAY_BURST_PER_PRINCIPAL": "100000",
                },
            )
            try:
                await asyncio.to_thread(net.start_core)
                await asyncio.to_thread(net.start_facade)
                fh, fp = host_port(net.http_addr)
                direct_body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
                relay_body = {"message": "hi", "max_tokens": 1024}
                direct, relayed = [], []
                for i in range(rounds + 20):  # the first 20 of each warm up
                    d = await _first_chunk("127.0.0.1", up.port, "/v1/chat/completions", direct_body)
                    r = await _first_chunk(fh, fp, "/chat/stream", relay_body)
                    if i >= 20:
                        direct.append(d * 1000)
                        relayed.append(r * 1000)
            finally:
                await asyncio.to_thread(net.stop)
    return {
        "rounds": float(rounds),
        "direct_first_chunk_p50_ms": percentile(direct, 50),
        "relay_first_chunk_p50_ms": percentile(relayed, 50),
        "added_p50_ms": percentile(relayed, 50) - percentile(direct, 50),
        "direct_first_chunk_p99_ms": percentile(direct, 99),
        "relay_first_chunk_p99_ms": percentile(relayed, 99),
        "added_p99_ms": percentile(relayed, 99) - percentile(direct, 99),
    }


def run(rounds: int = 200) -> dict[str, float]:
    """Alternate direct and relayed first-chunk measurements."""
    return run_async(_run(rounds))
