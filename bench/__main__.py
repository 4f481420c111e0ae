"""``python -m bench [name ...]``: run the benchmarks on loopback and print their figures."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

from bench import (
    cluster,
    dispatch_latency,
    hold,
    idle_streams,
    ledger_cost,
    model_cpu,
    openai_chat,
    pgstore,
    relay_latency,
    short_jobs,
    soak,
    streaming,
)

BENCHES: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
    "dispatch": ("send accepted -> assignment on a worker stream, 100 jobs/s", dispatch_latency.run),
    "short": ("short jobs: send -> 16 tokens over SSE -> done -> persisted", short_jobs.run),
    "streaming": (
        "500 concurrent jobs x 50 tokens/s through worker agent -> core -> facade -> SSE",
        streaming.run,
    ),
    "openai": (
        "short jobs three ways: network API, /v1/chat/completions streamed and whole, alternating",
        openai_chat.run,
    ),
    "idle": ("5,000 idle SSE streams on one facade process", idle_streams.run),
    "ledger": ("sends/s on a priced tier (ledger) vs the free tier, alternating rounds", ledger_cost.run),
    "relay": ("time to first chunk: upstream directly vs through the relay, alternating", relay_latency.run),
    "hold": (
        "100-1,500 streams x 50 tokens/s held through ashao and through a bare relay, side by side",
        hold.run,
    ),
    "soak": (
        "minutes of sends + SSE streams with the store failing half the time: RSS, typed errors, books",
        soak.run,
    ),
    "pgstore": (
        "PostgreSQL store: units/s for 6-statement units, per unit vs batched vs executemany",
        pgstore.run,
    ),
    "model": (
        "a real model on CPU (SmolLM2-135M, llama.cpp): tokens/s direct vs through the network, 1 vs 2 threads",
        model_cpu.run,
    ),
    "cluster": (
        "embedded vs PostgreSQL + NATS with 1 core + 1 facade vs 2 cores + 2 facades: dispatch, "
        "first token, priced short jobs, 500 streams, CPU and writes per job and per token",
        cluster.run,
    ),
}
OPT_IN = {"soak", "hold", "model", "cluster"}
"""Benchmarks run only when named (they take minutes, or need the optional model extra)."""
TABLES: dict[str, Callable[[dict[str, float]], str]] = {"cluster": cluster.table}
"""Benchmarks whose figures are also printed as a table."""


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks (all by default)."""
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHES, []],
        help="benchmarks to run (default: all but soak and cluster)",
    )
    args = p.parse_args(argv)
    names = args.names or [n for n in BENCHES if n not in OPT_IN]
    print(f"# command: python -m bench {' '.join(args.names)}".rstrip())
    print(
        f"# machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    for name in names:
        title, fn = BENCHES[name]
        t0 = time.perf_counter()
        figures = fn()
        print(f"\n## {name}: {title}  ({time.perf_counter() - t0:.1f} s)")
        width = max(len(k) for k in figures)
        for k, v in figures.items():
            print(f"  {k:<{width}}  {v:,.2f}")
        if name in TABLES:
            print(f"\n{TABLES[name](figures)}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
