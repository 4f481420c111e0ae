"""A real model on CPU: SmolLM2-135M-Instruct served by llama.cpp (``ashao up --model smollm2``).

For one and for two llama.cpp threads, the same answer (temperature 0, ``MAX_TOKENS`` tokens) is asked
straight from the model server (``direct``) and through the whole network (``network``: facade
``POST /v1/chat/completions`` streamed as SSE → core → worker agent → model server, and back), in
alternating rounds so all four figures share the machine's conditions. ``tok_per_s`` is the pace of an
answer from its first token to its last; ``ttft_ms`` is the time from the request to the first token;
``distinct_answers`` is 1 when every mode gave the same text; the load averages say how busy the machine
was (llama.cpp slows down when other work takes its cores).
Each network has its own core, facade, worker and model server; the idle ones cost next to nothing.

Needs the model extra (``make model-setup``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time

import httpx
import orjson

from ashao_cli.devnet import LocalNetwork
from ashao_cli.model import MODELS, free_loopback_addr, weights
from bench.common import network, run_async

ROUNDS = 5
MAX_TOKENS = 128
THREADS = (1, 2)
MESSAGES = [{"role": "user", "content": "Explain how a lighthouse works."}]


async def _answer(client: httpx.AsyncClient, url: str, model: str) -> tuple[int, float, float, str]:
    """One streamed answer: (tokens, seconds to the first, tokens/s from the first to the last, text)."""
    body = {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    text: list[str] = []
    pieces = usage = 0
    t0 = time.perf_counter()
    first = last = 0.0
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
            content = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if content:
                last = time.perf_counter()
                first = first or last
                pieces += 1
                text.append(content)
    tokens = usage or pieces
    rate = (tokens - 1) / (last - first) if last > first else float("nan")
    return tokens, first - t0, rate, "".join(text)


async def _measure(setups: dict[int, tuple[LocalNetwork, str]]) -> dict[str, float]:
    model = MODELS["smollm2"]
    rates: dict[str, list[float]] = {}
    ttfts: dict[str, list[float]] = {}
    texts: dict[str, set[str]] = {}
    load_at_start = os.getloadavg()[0]
    async with httpx.AsyncClient(timeout=300) as client:
        for round_ in range(ROUNDS + 1):  # round 0 warms up (and waits for the workers to connect)
            for threads, (net, server) in setups.items():
                for mode, url, name in (
                    ("direct", f"http://{server}/v1/chat/completions", model.served_as),
                    ("network", f"http://{net.http_addr}/v1/chat/completions", "ashao-free"),
                ):
                    tokens, ttft, rate, text = await _answer(client, url, name)
                    if round_ == 0:
                        continue
                    key = f"{mode}_{threads}_thread{'s' if threads > 1 else ''}"
                    rates.setdefault(key, []).append(rate)
                    ttfts.setdefault(key, []).append(ttft * 1000)
                    texts.setdefault(key, set()).add(text)
                    if tokens < 2:
                        raise RuntimeError(f"{key}: an answer of {tokens} token(s)")
    figures: dict[str, float] = {}
    for key in rates:
        figures[f"{key}_tok_per_s"] = statistics.median(rates[key])
        figures[f"{key}_ttft_ms"] = statistics.median(ttfts[key])
    figures["rounds"] = ROUNDS
    figures["max_tokens"] = MAX_TOKENS
    figures["distinct_answers"] = len(set().union(*texts.values()))
    # other work on the machine slows llama.cpp down: say how busy it was
    figures["load_avg_1min_start"] = load_at_start
    figures["load_avg_1min_end"] = os.getloadavg()[0]
    return figures


def run() -> dict[str, float]:
    """Start one network per thread count, then measure them in alternating rounds."""
    model = MODELS["smollm2"]
    weights(model)  # ModelUnavailableError, saying how to install it, before anything starts
    with contextlib.ExitStack() as stack:
        setups: dict[int, tuple[LocalNetwork, str]] = {}
        for threads in THREADS:
            net = stack.enter_context(network())
            server = free_loopback_addr()
            net.start_model_server(f"model-{threads}", model, addr=server, threads=threads)
            net.start_model_worker("local", model, upstream=server)
            setups[threads] = (net, server)
        return run_async(_measure(setups))
