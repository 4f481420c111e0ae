"""One core on SQLite against a cluster on PostgreSQL + NATS, side by side in one run.

Three networks, one after the other, each through the same three measurements (those of ``dispatch``,
``short`` and ``streaming``):

- ``embedded``: one core on its SQLite file, one facade;
- ``pg_1x1``: one core on PostgreSQL + NATS (a fresh database, a NATS server of its own), one facade;
- ``pg_2x2``: two cores of one cluster, two facades (each preferring another core).

Dispatch: 1,000 free sends at 100/s over the facades in turn, a raw gRPC worker on each core; from the
send request leaving the client to the worker holding the assignment, and to the first token reaching
the client over SSE. Short jobs: 64 closed-loop clients, each signed in with credits, on the priced
``basic`` tier (each send reserves credits in the ledger; each end settles them), 16 tokens each, two
synthetic agents as fast as they go. Streaming: 500 streams at 50 tokens/s for 10 s, emit → receive.
CPU of every process (and of the database's server processes and of NATS) per short job and per
streamed token; PostgreSQL transactions and rows, NATS messages per job and per token.

``ASHAO_BENCH_CLUSTER_NETWORKS`` (comma-separated, default all three) and ``ASHAO_BENCH_CLUSTER_PARTS``
(some of ``dispatch,short,streams``, default all) run only some networks or some measurements, for
quicker comparisons of one figure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import grpc

from bench import dispatch_latency, short_jobs, streaming
from bench.common import CpuMeter, Network, run_async, scaled_network
from bench.engines import Engines, engines
from bench.ledger_cost import _sign_in

MODES = {"embedded": (0, 1, 1), "pg_1x1": (1, 1, 1), "pg_2x2": (1, 2, 2)}
"""Mode: (on PostgreSQL + NATS, cores, facades)."""
PARTS = ("dispatch", "short", "streams")
ROLES = ("core", "facade", "worker", "postgres", "nats", "loadgen")
CLIENTS = 64
TOKENS = 16


EVERY_SLOT = {"ASHAO_WORKER_PROBATION_SLOTS": "1024"}
"""A new worker starts on probation with a few jobs at once: here its slots are all used at once."""


@asynccontextmanager
async def _cluster(shared: bool, cores: int, facades: int) -> AsyncIterator[tuple[Network, Engines | None]]:
    if not shared:
        with scaled_network(EVERY_SLOT, cores=cores, facades=facades) as n:
            yield n, None
        return
    async with engines() as e:
        with scaled_network({**e.env, **EVERY_SLOT}, cores=cores, facades=facades) as n:
            yield n, e


def _stop_workers(n: Network) -> None:
    for entry in [c for c in n.net.children if c[0].startswith("worker")]:
        entry[1].send_signal(signal.SIGTERM)
        entry[1].wait(20)
        n.net.children.remove(entry)


def _meter(n: Network, e: Engines | None) -> CpuMeter:
    extra: dict[str, Callable[[], list[int]]] = {}
    if e is not None:
        extra = {"postgres": e.postgres_pids, "nats": e.nats_pids}
    return CpuMeter(n.net, extra)


async def _costs(
    e: Engines | None, before: dict[str, float], cpu: CpuMeter, count: float, unit: str
) -> dict[str, float]:
    """CPU of each process per ``unit`` (ms per job, µs per token), and the engines' writes and
    messages per ``unit``."""
    scale, per = ("ms", 1e3) if unit == "job" else ("us", 1e6)
    out = {f"cpu_{k}_{scale}_per_{unit}": v / count * per for k, v in cpu.seconds.items()}
    if e is not None:
        await asyncio.sleep(1.0)  # (PostgreSQL publishes its counters within a second)
        after = await e.read()
        out |= {f"{k}_per_{unit}": (after[k] - before[k]) / count for k in after}
    return out


async def _credentials(n: Network, clients: int) -> list[bytes]:
    async with grpc.aio.insecure_channel(n.cores[0]) as channel:
        users = [await _sign_in(channel, n.net.data_dir) for _ in range(clients)]
    return [f"Authorization: {md[0][1]}\r\n".encode() for md in users]


async def _persisted(n: Network, e: Engines | None) -> int:
    sql = (
        "SELECT COUNT(*) FROM jobs j JOIN messages m ON m.job_id = j.id AND m.role = 'assistant'"
        " WHERE j.state = 'done' AND j.tier = 'basic'"
    )
    if e is None:
        import sqlite3

        with sqlite3.connect(n.net.data_dir / "ashao.db") as db:
            return int(db.execute(sql).fetchone()[0])
    conn = await asyncpg.connect(e.dsn, timeout=10)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def _chosen(variable: str, known: tuple[str, ...]) -> list[str]:
    """The names listed in ``variable`` (comma-separated; empty: all of ``known``), in ``known``'s order."""
    listed = {v.strip() for v in os.environ.get(variable, "").split(",") if v.strip()}
    unknown = listed - set(known)
    if unknown:
        raise SystemExit(f"{variable}: unknown {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    return [k for k in known if k in listed] if listed else list(known)


async def _mode(shared: bool, cores: int, facades: int, parts: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    async with _cluster(shared, cores, facades) as (n, e):
        if "dispatch" in parts:
            out |= await _dispatch(n, cores)
        if "short" in parts:
            out |= await _short(n, e)
        if "streams" in parts:
            out |= await _streams(n, e)
    return out


async def _dispatch(n: Network, cores: int) -> dict[str, float]:
    d = await dispatch_latency.measure(n.facades, n.cores, n.net.join_token(uses=cores), 100.0, 1000)
    return {
        "dispatch_p50_ms": d["issue_p50_ms"],
        "dispatch_p99_ms": d["issue_p99_ms"],
        "ttft_p50_ms": d["ttft_p50_ms"],
        "ttft_p99_ms": d["ttft_p99_ms"],
    }


async def _short(n: Network, e: Engines | None) -> dict[str, float]:
    worker = ["--backend", "synthetic", "--tokens-per-sec", "0", "--synthetic-tokens", str(TOKENS)]
    n.start_workers(2, "short", *worker, "--slots", "256")
    credentials = await _credentials(n, CLIENTS)
    await asyncio.sleep(2.0)
    cpu = _meter(n, e)
    before = await e.read() if e else {}
    s = await short_jobs.measure(n.facades, CLIENTS, 10.0, cpu, tier="basic", credentials=credentials)
    jobs = s["jobs"]
    out = {
        "short_jobs_per_s": s["jobs_per_s"],
        "short_p50_ms": s["job_p50_ms"],
        "short_errors": s["errors"],
    }
    out |= await _costs(e, before, cpu, max(jobs, 1.0), "job")
    out["short_persisted_pct"] = await _persisted(n, e) / max(jobs, 1.0) * 100
    _stop_workers(n)
    return out


async def _streams(n: Network, e: Engines | None) -> dict[str, float]:
    per_job = 500
    stream = ["--backend", "synthetic", "--tokens-per-sec", "50", "--synthetic-tokens", str(per_job)]
    n.start_workers(2, "stream", *stream, "--synthetic-stamp", "--slots", "251")
    await asyncio.sleep(2.0)
    cpu = _meter(n, e)
    before = await e.read() if e else {}
    t = await streaming.measure(n.facades, 500, per_job, cpu)
    out = {
        "stream_lag_p50_ms": t["lag_p50_ms"],
        "stream_lag_p99_ms": t["lag_p99_ms"],
        "stream_steady_lag_p99_ms": t["steady_lag_p99_ms"],
        "stream_delivered_pct": t["tokens_received"] / t["tokens_expected"] * 100,
        "stream_out_of_order": t["out_of_order"],
    }
    out |= await _costs(e, before, cpu, max(t["tokens_received"], 1.0), "token")
    return out


async def _all() -> dict[str, float]:
    out: dict[str, float] = {}
    parts = _chosen("ASHAO_BENCH_CLUSTER_PARTS", PARTS)
    for mode in _chosen("ASHAO_BENCH_CLUSTER_NETWORKS", tuple(MODES)):
        shared, cores, facades = MODES[mode]
        t0 = time.perf_counter()
        figures = await _mode(bool(shared), cores, facades, parts)
        figures["seconds"] = time.perf_counter() - t0
        out |= {f"{mode}.{k}": v for k, v in figures.items()}
    return out


def run() -> dict[str, float]:
    """The three networks (or those chosen), one after the other."""
    return run_async(_all())


ROWS = (
    ("dispatch p50 / p99, ms (send → worker holds it)", "dispatch_p50_ms", "dispatch_p99_ms"),
    ("time to first token p50 / p99, ms", "ttft_p50_ms", "ttft_p99_ms"),
    ("short jobs/s, priced tier (job p50 ms)", "short_jobs_per_s", "short_p50_ms"),
    ("streams: delivered % / out of order", "stream_delivered_pct", "stream_out_of_order"),
    ("streams: lag p50 / p99, ms", "stream_lag_p50_ms", "stream_lag_p99_ms"),
)


def _role_sum(figures: dict[str, float], mode: str, role: str, unit: str) -> float | None:
    keys = [k for k in figures if k.startswith(f"{mode}.cpu_{role}") and k.endswith(unit)]
    return sum(figures[k] for k in keys) if keys else None


def table(figures: dict[str, float]) -> str:
    """The figures as a Markdown table, one column per network (CPU summed per kind of process)."""
    modes = [m for m in MODES if f"{m}.seconds" in figures]
    lines = ["| figure | " + " | ".join(modes) + " |", "| --- |" + " --- |" * len(modes)]

    def cell(mode: str, *keys: str) -> str:
        vals = [figures.get(f"{mode}.{k}") for k in keys]
        return " / ".join("-" if v is None else f"{v:,.1f}" for v in vals)

    for title, *keys in ROWS:
        lines.append(f"| {title} | " + " | ".join(cell(m, *keys) for m in modes) + " |")
    for unit, label in (
        ("ms_per_job", "CPU ms per short job"),
        ("us_per_token", "CPU µs per streamed token"),
    ):
        for role in ROLES:
            vals = [_role_sum(figures, m, role, unit) for m in modes]
            if any(v is not None for v in vals):
                text = " | ".join("-" if v is None else f"{v:,.2f}" for v in vals)
                lines.append(f"| {label}: {role} | {text} |")
    for key, label in (
        ("pg_commits_per_job", "PostgreSQL transactions per short job"),
        ("pg_rows_per_job", "PostgreSQL rows written per short job"),
        ("pg_commits_per_token", "PostgreSQL transactions per streamed token"),
        ("nats_msgs_in_per_job", "NATS messages in / out per short job"),
        ("nats_msgs_in_per_token", "NATS messages in / out per streamed token"),
    ):
        keys = [key] + ([key.replace("_in_", "_out_")] if "_in_" in key else [])
        lines.append(f"| {label} | " + " | ".join(cell(m, *keys) for m in modes) + " |")
    return "\n".join(lines)
