"""Holding N concurrent streams of 50 tokens/s through ashao, and through a bare relay, side by side.

``python -m bench hold``. For each N (``ASHAO_HOLD_STREAMS``, default 100,500,1000,1500) the same load
generator (``bench.loadworker``: two workers speaking ``WorkerService.Connect``, every job's tokens
stamped and batched together) runs N jobs of 500 tokens at 50 tokens/s through

- ashao: core + facade as ``ashao up --local-workers 0`` starts them; each stream is a send
  (``POST /api/chat/send``) and then ``GET /api/chat/stream`` (the network API's SSE);
- the bare relay (``bench.bare_relay``): one process, gRPC in, SSE out, the same SSE bytes, one write
  per client per incoming batch: the reference for what relaying these tokens costs in Python.

Holds alternate between the two, so both see the same machine. Every stream is followed to its end:
every token must arrive, in order (``id`` and index checked), then ``done``. Over a window once every
stream is open (``window_s``, at most 6 s, while no job has finished yet) it measures emit → receive
lag of the tokens stamped in it (p50/p99/max: from the moment the load generator wrote the batch
holding the token), and CPU seconds per token of each process (``/proc/<pid>/stat``): the window's
CPU over the tokens emitted in it, and (``*_all``) the CPU from the start to the last stream's end
over every token delivered (each job's end, the core's settling included). Where lag runs to seconds
the system (or the machine) did not keep up and the window's figure is not to be trusted.
Collector pauses of the core and the facade are read from their ``ASHAO_GC_LOG`` over the whole hold
(kept in ``ASHAO_HOLD_DIR`` if set).

``ASHAO_HOLD_PROFILE=<N>``: py-spy samples the core and the facade over that hold's window and the
top frames (own time) are printed (needs ``py-spy`` and ptrace rights).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from ashao.v1 import worker_pb2, worker_pb2_grpc
from ashao_cli.devnet import LocalNetwork, wait_for_port
from bench.common import UNCAPPED, cpu_seconds, host_port, percentile, run_async
from bench.holdstats import gc_pauses, record_profiles, top_frames
from bench.httpclient import Connection
from bench.sseclients import Follower, Tally
from tests.helpers.net import free_port

RATE = 50.0
TOKENS = 500
"""Tokens per job: 10 s at 50 tokens/s (the free tier answers at most 512)."""
WINDOW_S = 6.0
SETTLE_S = 0.5
"""Between the last stream opening and the window."""
REPORTED_ONLY = 1500


class System:
    """One system under test: how to open a stream, and its processes."""

    def __init__(
        self, name: str, http_addr: str, pids: dict[str, int], gc_logs: dict[str, Path], loadworker: int
    ) -> None:
        self.name = name
        self.loadworker = loadworker
        """The load generator's pid: SIGUSR2 makes new jobs wait, SIGUSR1 starts them."""
        self.host, self.port = host_port(http_addr)
        self.pids = pids
        """Processes to measure (name → pid), the load generator's included."""
        self.gc_logs = gc_logs

    async def open(self, conn: Connection | None, i: int, tally: Tally) -> Follower:
        """Start stream ``i``: a send then its SSE stream (ashao), or the stream alone (bare)."""
        if conn is not None:
            r = await conn.post_json("/api/chat/send", {"tier": "free", "content": f"hold {i}"})
            assert isinstance(r, dict)
            path = f"/api/chat/stream?jobId={r['jobId']}"
        else:
            path = f"/stream?job=job{i}"
        request = b"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n" % (
            path.encode(),
            self.host.encode(),
        )
        loop = asyncio.get_running_loop()
        _, follower = await loop.create_connection(
            lambda: Follower(request, tally, TOKENS), self.host, self.port
        )
        return follower


async def hold(system: System, n: int, *, senders: int = 8, profile: Path | None = None) -> dict[str, float]:
    """N streams through ``system``, followed to their end; the figures of the hold."""
    tally = Tally()
    followers: list[Follower] = []
    ids = iter(range(n))
    t0 = time.time_ns()
    conns = [Connection(system.host, system.port) for _ in range(senders)] if system.name == "ashao" else []
    os.kill(system.loadworker, signal.SIGUSR2)  # the jobs wait until every stream is open
    await asyncio.sleep(0.3)

    async def opener(conn: Connection | None) -> None:
        for i in ids:
            followers.append(await system.open(conn, i, tally))

    await asyncio.gather(*(opener(c) for c in (conns or [None] * senders)))
    await asyncio.wait_for(asyncio.gather(*(f.opened for f in followers)), 60)
    ramped = time.time_ns()
    cpu_go = {k: cpu_seconds(p) for k, p in system.pids.items()}
    os.kill(system.loadworker, signal.SIGUSR1)
    # The window: every stream streaming, none finished yet (each lasts TOKENS/RATE s from now).
    w0 = ramped + int(SETTLE_S * 1e9)
    w1 = min(w0 + int(WINDOW_S * 1e9), ramped + int((TOKENS / RATE - 0.5) * 1e9))
    await asyncio.sleep(max(0.0, (w0 - time.time_ns()) / 1e9))
    cpu0 = {k: cpu_seconds(p) for k, p in system.pids.items()}
    spies = []
    if profile is not None:
        spies = record_profiles(
            {k: p for k, p in system.pids.items() if k in ("core", "facade", "bare")},
            (w1 - w0) / 1e9,
            profile,
        )
    await asyncio.sleep(max(0.0, (w1 - time.time_ns()) / 1e9))
    cpu1 = {k: cpu_seconds(p) for k, p in system.pids.items()}
    w1 = time.time_ns()
    _, unfinished = await asyncio.wait([f.ended for f in followers], timeout=60)
    for f in followers:
        if not f.ended.done():
            f.connection_lost(None)  # counted as failed
    t1 = time.time_ns()
    cpu_end = {k: cpu_seconds(p) for k, p in system.pids.items()}
    print(f"# {system.name} N={n}: t0 {t0} ramped {ramped} window {w0}-{w1} end {t1}", file=sys.stderr)
    if tally.first_failure:
        print(f"# {system.name} N={n}: first failure: {tally.first_failure!r}", file=sys.stderr)
    for c in conns:
        await c.close()
    for spy in spies:
        await asyncio.to_thread(spy.wait)
    lags = [lag / 1000 for lag, s in zip(tally.lags_us, tally.stamps, strict=True) if w0 <= s <= w1]
    # The tokens emitted in the window: what the window's CPU was spent on while the system keeps up
    # (counting the ones received instead would credit a backlog drained late to the window).
    delivered = len(lags)
    out: dict[str, float] = {
        "streams": float(n),
        "ramp_s": (ramped - t0) / 1e9,
        "window_s": (w1 - w0) / 1e9,
        "delivered": tally.received / (n * TOKENS),
        "complete": float(tally.complete),
        "failed": float(tally.failed),
        "unfinished": float(len(unfinished)),
        "out_of_order": float(tally.out_of_order),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "lag_max_ms": max(lags) if lags else float("nan"),
        "tokens_per_s": delivered / ((w1 - w0) / 1e9),
    }
    for k in system.pids:
        out[f"cpu_{k}_us_per_tok"] = (cpu1[k] - cpu0[k]) / max(1, delivered) * 1e6
        # From the start signal to the last stream's end, over every token: each job's end included.
        out[f"cpu_{k}_us_per_tok_all"] = (cpu_end[k] - cpu_go[k]) / max(1, tally.received) * 1e6
        out[f"cpu_{k}_pct"] = (cpu1[k] - cpu0[k]) / ((w1 - w0) / 1e9) * 100
    for k, path in system.gc_logs.items():
        longest, longest_cpu, over, count = gc_pauses(path, t0, t1)
        out[f"gc_{k}_max_ms"] = longest
        out[f"gc_{k}_max_cpu_ms"] = longest_cpu
        out[f"gc_{k}_over_5ms"] = float(over)
        out[f"gc_{k}_collections"] = float(count)
    return out


def _register(grpc_addr: str, count: int) -> list[str]:
    with grpc.insecure_channel(grpc_addr) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        return [
            stub.RegisterWorker(
                worker_pb2.RegisterWorkerRequest(name=f"hold-{i}", tiers=["free"], slots=1024), timeout=10
            ).worker_token
            for i in range(count)
        ]


def _loadworker(target: str, tokens: list[str]) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "bench.loadworker", "--target", target, "--tokens", str(TOKENS)]
    args += ["--rate", str(RATE)]
    for t in tokens:
        args += ["--token", t]
    return subprocess.Popen(args)


@contextlib.contextmanager
def _systems(tmp: Path) -> Iterator[list[System]]:
    logs = Path(os.environ.get("ASHAO_HOLD_DIR") or tmp)
    logs.mkdir(parents=True, exist_ok=True)
    gc_core, gc_facade = logs / "gc-core.log", logs / "gc-facade.log"
    env = {
        "ASHAO_WORKER_REGISTRATION": "open",
        "ASHAO_WORKER_PROBATION_SLOTS": "1024",
        "ASHAO_SUBSCRIBE_MAX_WATCHES": "100000",
    }
    procs: list[subprocess.Popen[bytes]] = []
    net = LocalNetwork(
        data_dir=tmp,
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        extra_env={**UNCAPPED, **env},
        quiet=True,
    )
    try:
        # Each process gets its own log: the core's and the facade's settings read the same name.
        net.env["ASHAO_GC_LOG"] = str(gc_core)
        net.start_core()
        net.env["ASHAO_GC_LOG"] = str(gc_facade)
        net.start_facade()
        workers = _loadworker(net.grpc_addr, _register(net.grpc_addr, 2))
        procs.append(workers)
        bare_grpc, bare_http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_relay", "--grpc", bare_grpc, "--http", bare_http],
            stdout=subprocess.DEVNULL,
        )
        procs.append(bare)
        if not wait_for_port(bare_http, timeout=30, proc=bare):
            raise RuntimeError("the bare relay did not start")
        bare_workers = _loadworker(bare_grpc, ["-", "-"])
        procs.append(bare_workers)
        pids = {name.split()[0]: p.pid for name, p in net.children}
        time.sleep(2.0)  # the workers connect
        yield [
            System(
                "ashao",
                net.http_addr,
                {**pids, "loadworker": workers.pid, "clients": os.getpid()},
                {"core": gc_core, "facade": gc_facade},
                workers.pid,
            ),
            System(
                "bare",
                bare_http,
                {"bare": bare.pid, "loadworker": bare_workers.pid, "clients": os.getpid()},
                {},
                bare_workers.pid,
            ),
        ]
    finally:
        for p in reversed(procs):
            p.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
            if p.poll() is None:
                p.kill()
                p.wait()
        net.stop()


def _streams() -> list[int]:
    raw = os.environ.get("ASHAO_HOLD_STREAMS", "100,500,1000,1500")
    return [int(x) for x in raw.split(",") if x.strip()]


def _print_table(results: dict[str, dict[int, dict[str, float]]]) -> None:
    rows = [
        (
            "lag p50 / p99 / max ms",
            lambda f: f"{f['lag_p50_ms']:.1f} / {f['lag_p99_ms']:.1f} / {f['lag_max_ms']:.0f}",
        ),
        ("delivered, out of order", lambda f: f"{f['delivered']:.4f}, {f['out_of_order']:.0f}"),
        ("tokens/s in window", lambda f: f"{f['tokens_per_s']:,.0f}"),
    ]
    for name, by_n in results.items():
        print(f"\n# {name}")
        for n, f in by_n.items():
            cpu = ", ".join(
                f"{k[4:-11]} {v:.1f} ({f[k + '_all']:.1f})" for k, v in f.items() if k.endswith("_us_per_tok")
            )
            gc_ = ", ".join(
                f"{k[3:-7]} max {v:.1f} ms (CPU {f[k[:-7] + '_max_cpu_ms']:.1f} ms; {f[k[:-7] + '_over_5ms']:.0f} > 5 ms)"
                for k, v in f.items()
                if k.startswith("gc_") and k.endswith("_max_ms")
            )
            line = "; ".join(f"{label} {fn(f)}" for label, fn in rows)
            print(f"  N={n}{' (reported only)' if n >= REPORTED_ONLY else ''}: {line}")
            print(f"    CPU µs/token in window (whole hold): {cpu}{'; GC ' + gc_ if gc_ else ''}")


def run() -> dict[str, float]:
    """Every hold, alternating systems; figures keyed ``<system>_<N>_<figure>`` plus the CPU ratios."""
    streams = _streams()
    profile_n = int(os.environ.get("ASHAO_HOLD_PROFILE", "0") or 0)
    results: dict[str, dict[int, dict[str, float]]] = {"ashao": {}, "bare": {}}
    with tempfile.TemporaryDirectory(prefix="ashao-hold-") as tmp, _systems(Path(tmp)) as systems:
        for n in streams:
            for system in systems:
                if system.name not in os.environ.get("ASHAO_HOLD_SYSTEMS", "ashao,bare"):
                    continue
                prof = None
                if n == profile_n:
                    prof = Path(os.environ.get("ASHAO_HOLD_DIR") or tmp) / f"profile-{system.name}-{n}"
                    prof.mkdir(exist_ok=True)
                results[system.name][n] = f = run_async(hold(system, n, profile=prof))
                print(
                    f"# {system.name} N={n}: delivered {f['delivered']:.4f}, failed {f['failed']:.0f},"
                    f" lag p99 {f['lag_p99_ms']:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
                if prof is not None:
                    for raw in sorted(prof.glob("*.txt")):
                        print(f"\n# py-spy {system.name} N={n} {raw.stem}: own time, top frames")
                        for share, frame in top_frames(raw):
                            print(f"  {share:5.1f}%  {frame}")
                time.sleep(1.0)
    _print_table(results)
    figures: dict[str, float] = {}
    for name, by_n in results.items():
        for n, f in by_n.items():
            for k, v in f.items():
                figures[f"{name}_{n}_{k}"] = v
    for n in streams:
        if n not in results["ashao"] or n not in results["bare"]:
            continue
        a, b = results["ashao"][n], results["bare"][n]
        mine = a["cpu_core_us_per_tok"] + a["cpu_facade_us_per_tok"]
        figures[f"ratio_{n}_cpu_per_tok"] = mine / max(1e-9, b["cpu_bare_us_per_tok"])
        mine_all = a["cpu_core_us_per_tok_all"] + a["cpu_facade_us_per_tok_all"]
        figures[f"ratio_{n}_cpu_per_tok_all"] = mine_all / max(1e-9, b["cpu_bare_us_per_tok_all"])
    return figures
