"""Soak: minutes of steady load (sends and SSE streams) while the store fails about half the time.

The core's data directory is a small tmpfs, filled up for ``ASHAO_SOAK_FAIL_S`` seconds (10 by
default) and freed again for ``ASHAO_SOAK_OK_S`` (6), in turn. SQLite first fills the room its
write-ahead log already has, so writes are refused a few seconds after the disk fills: a full disk 10
of every 16 seconds is a store refusing writes about half the time. Where no tmpfs can be mounted
(not root), or with ``ASHAO_SOAK_FAULT=hook``, the core runs with the store fault hook of the fault
suite (``tests/helpers/storehook``) and in the failing phases its write transactions fail part-way
instead. It runs ``ASHAO_SOAK_SECONDS`` (180 by default).

Measured: resident memory of the core and the facade over time (after a warm-up of a fifth of the
run: the median of the first and of the last tenth of the samples, their drift, and the highest
sample; ``ASHAO_SOAK_CSV`` names a file for every sample); the share of time the store refused
writes (a probe makes one write that moves no money every 0.25 s, never retried); every failure a
client saw, each of which must be typed (HTTP 503 ``{error}``, or an SSE ``error`` event); and, once
the processes have stopped, the books check of the fault suite over the core's SQLite file (nothing
acknowledged lost, the ledger balanced, each priced job settled once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

from ashao_cli.devnet import LocalNetwork
from bench.common import rss_kib, run_async
from tests.helpers.books import SPLICED, promise_problems, read_books
from tests.helpers.disk import CannotMount, fill, tmpfs
from tests.helpers.faultcase import FAULT_ENV, WORKER_ARGS, grant, mixed_clients, signed_in, url
from tests.helpers.load import Load, wait_workers
from tests.helpers.net import free_port
from tests.helpers.procs import child
from tests.helpers.storefaults import arm, disarm, hook_env, injected

SAMPLE_S = 1.0
"""How often resident memory is read."""
PROBE_S = 0.25
"""How often the probe writes (once each: refused or not, it tells whether the store takes writes now)."""


class Fault:
    """The store's failing phases: a full disk, or failing commits through the hook."""

    def __init__(self, disk: Path | None, control: Path) -> None:
        self.disk = disk
        self.control = control
        self._filler: Path | None = None

    def start(self) -> None:
        if self.disk is not None:
            self._filler = fill(self.disk)
        else:
            arm(self.control, 1.0)

    def stop(self) -> None:
        if self._filler is not None:
            self._filler.unlink()
            self._filler = None
        disarm(self.control)


async def _drive(
    net: LocalNetwork,
    load: Load,
    fault: Fault,
    seconds: float,
    phases_s: tuple[float, float],
    samples: list[tuple[float, int, int]],
) -> dict[str, float]:
    await wait_workers(load.http, 2)
    users = await signed_in(load, 4)
    for user in users:
        await grant(net, load, user, 1_000_000)
    load.start(mixed_clients(users, free=16, priced=16))
    probes: list[bool] = []
    probing = asyncio.create_task(_probe(load, users[0], probes))
    core, facade = child(net, "core").pid, child(net, "facade").pid
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    phases = 0
    failing_phases: list[tuple[float, float]] = []
    try:
        while loop.time() - t0 < seconds:
            failing = phases % 2 == 1
            if failing:
                await asyncio.to_thread(fault.start)
            began = loop.time()
            end = min(began + phases_s[1 if failing else 0], t0 + seconds)
            while loop.time() < end:
                samples.append((loop.time() - t0, rss_kib(core), rss_kib(facade)))
                await asyncio.sleep(SAMPLE_S)
            if failing:
                await asyncio.to_thread(fault.stop)
                failing_phases.append((began, loop.time()))
            phases += 1
    finally:
        fault.stop()
        probing.cancel()
    elapsed = loop.time() - t0
    load.stop()
    await asyncio.gather(probing, return_exceptions=True)
    await load.finish(timeout=180)
    faulted = sum(end - began for began, end in failing_phases)
    figures = {
        "duration_s": elapsed,
        "store_faulted_pct": faulted / elapsed * 100,
        "store_refusing_pct": probes.count(False) / max(1, len(probes)) * 100,
    }
    warm = [s for s in samples if s[0] >= seconds / 5]
    tenth = max(1, len(warm) // 10)
    for name, col in (("core", 1), ("facade", 2)):
        first = statistics.median(s[col] for s in warm[:tenth]) / 1024
        last = statistics.median(s[col] for s in warm[-tenth:]) / 1024
        figures[f"rss_{name}_mib_at_warm"] = first
        figures[f"rss_{name}_mib_at_end"] = last
        figures[f"rss_{name}_mib_max"] = max(s[col] for s in warm) / 1024
        figures[f"rss_{name}_drift_pct"] = (last - first) / first * 100
    return figures


async def _probe(load: Load, session: str, probes: list[bool]) -> None:
    """Every ``PROBE_S``, one write that moves no money and queues no job (a new API key), never
    retried: whether the store takes writes at that moment."""
    headers = {"Authorization": f"Bearer {session}"}
    for i in itertools.count():
        try:
            r = await load.http.post("/api/keys", json={"name": f"probe {i}"}, headers=headers)
        except httpx.TransportError:
            load.problems.append("probe: no answer from the facade")
        else:
            if r.status_code not in (200, 503):
                load.problems.append(f"probe: {r.status_code} {r.content[:200]!r}")
            probes.append(r.status_code == 200)
        await asyncio.sleep(PROBE_S)


def _soak(root: Path, disk: Path | None, seconds: float, phases_s: tuple[float, float]) -> dict[str, float]:
    control = root / "store-faults"
    env = dict(FAULT_ENV)
    if disk is None:
        env.update(hook_env(control))
    net = LocalNetwork(
        data_dir=(disk or root) / "data",
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        extra_env=env,
        quiet=True,
    )
    fault = Fault(disk, control)
    try:
        net.start_core()
        net.start_facade()
        for i in (1, 2):
            net.start_worker(f"w{i}", *WORKER_ARGS)

        samples: list[tuple[float, int, int]] = []

        async def drive() -> tuple[dict[str, float], Load]:
            async with Load(url(net), send_deadline_s=120, stream_deadline_s=180) as load:
                return await _drive(net, load, fault, seconds, phases_s, samples), load

        figures, load = run_async(drive())
    finally:
        net.stop()
    if csv := os.environ.get("ASHAO_SOAK_CSV"):
        Path(csv).write_text("".join(f"{t:.1f},{c},{f}\n" for t, c, f in samples))
    db = net.data_dir / "ashao.db"
    books = read_books(db)
    broken = promise_problems(db, load.streams, given_up=load.unacknowledged)
    for problem in (load.problems + books.problems + broken)[:20]:
        print(f"# problem: {problem}", file=sys.stderr)
    other = sum(n for status, n in load.sends.items() if status not in ("200", "503", "broken"))
    return {
        "store_fault_is_full_disk": 1.0 if disk is not None else 0.0,
        **figures,
        "commits_failed_by_hook": float(injected(control)),
        "sends_acknowledged": float(load.sends["200"]),
        "sends_refused_503": float(load.sends["503"]),
        "sends_refused_other": float(other),
        "sends_given_up": float(load.unacknowledged),
        "streams_done": float(load.done),
        "streams_error_event": float(load.errors),
        "streams_resumed": float(sum(1 for s in load.streams.values() if s.resumes)),
        "untyped_failures": float(len(load.problems)),
        "acknowledged_lost_or_misreported": float(len(broken)),
        "answers_spliced": float(sum(1 for p in broken if SPLICED in p)),
        "books_problems": float(len(books.problems)),
        "jobs_paid": float(books.paid),
        "jobs_refunded": float(books.refunded),
        "escrow_left": float(books.escrow),
    }


def run() -> dict[str, float]:
    """A soak of ``ASHAO_SOAK_SECONDS`` (180): the store fails for ``ASHAO_SOAK_FAIL_S`` (10), then works
    for ``ASHAO_SOAK_OK_S`` (6), and so on; by a full disk, or with ``ASHAO_SOAK_FAULT=hook`` (or
    without root) by the fault hook."""
    seconds = float(os.environ.get("ASHAO_SOAK_SECONDS", "180"))
    phases_s = (
        float(os.environ.get("ASHAO_SOAK_OK_S", "6")),
        float(os.environ.get("ASHAO_SOAK_FAIL_S", "10")),
    )
    with tempfile.TemporaryDirectory(prefix="ashao-soak-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        disk: Path | None = None
        if os.environ.get("ASHAO_SOAK_FAULT", "disk") == "disk":
            try:
                disk = stack.enter_context(tmpfs(root / "disk", size_mib=256))
            except CannotMount as exc:
                print(f"# soak: no tmpfs ({exc}); the store fails through the fault hook", file=sys.stderr)
        return _soak(root, disk, seconds, phases_s)
