"""Shared pieces of the benchmarks: a local network on free ports, percentiles, process memory."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ashao_cli.devnet import LocalNetwork
from tests.helpers.net import free_port

T = TypeVar("T")


UNCAPPED = {
    "ASHAO_MAX_CONNECTIONS_PER_IP": "0",
    "ASHAO_SEND_RATE_PER_IP": "1000000",
    "ASHAO_SEND_BURST_PER_IP": "1000000",
}
"""Per-address limits lifted: they are there for the internet, and a benchmark's load is all loopback."""


@contextlib.contextmanager
def network(extra_env: dict[str, str] | None = None) -> Iterator[LocalNetwork]:
    """Core + facade on free loopback ports with a throw-away data directory."""
    with tempfile.TemporaryDirectory(prefix="ashao-bench-") as tmp:
        net = LocalNetwork(
            data_dir=Path(tmp),
            http_addr=f"127.0.0.1:{free_port()}",
            grpc_addr=f"127.0.0.1:{free_port()}",
            # Every client of a benchmark is one loopback address: no per-address caps here.
            extra_env={**UNCAPPED, **(extra_env or {})},
            quiet=True,
        )
        try:
            net.start_core()
            net.start_facade()
            yield net
        finally:
            net.stop()


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def rss_kib(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def host_port(addr: str) -> tuple[str, int]:
    """(host, port) of ``host:port``."""
    host, _, port = addr.rpartition(":")
    return host, int(port)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class CpuMeter:
    """CPU used by each process of a network (and this one) between ``start()`` and ``stop()``."""

    def __init__(self, net: LocalNetwork) -> None:
        self._pids = {"loadgen": os.getpid()}
        for name, proc in net.children:
            key = name.split()[0]
            n = sum(1 for k in self._pids if k.startswith(key))
            self._pids[f"{key}{n}" if n else key] = proc.pid
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def add(self, name: str, pid: int) -> None:
        """Measure another process too (one the network did not start)."""
        self._pids[name] = pid

    def start(self) -> None:
        """Begin measuring."""
        self._t0 = time.perf_counter()
        self._start = {k: cpu_seconds(p) for k, p in self._pids.items()}

    def stop(self) -> dict[str, float]:
        """Per process, the share of one core used since ``start()``, in percent."""
        wall = time.perf_counter() - self._t0
        return {f"cpu_{k}_pct": (cpu_seconds(p) - self._start[k]) / wall * 100 for k, p in self._pids.items()}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop (as the processes under test are), so that what it costs per
    event distorts the figures as little as possible."""
    import uvloop

    return uvloop.run(coro)
