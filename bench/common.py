"""Shared pieces of the benchmarks: a local network on free ports, percentiles, process memory and CPU."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ashao_cli.devnet import LocalNetwork, preferring
from tests.helpers.net import free_port

T = TypeVar("T")


UNCAPPED = {
    "ASHAO_MAX_CONNECTIONS_PER_IP": "0",
    "ASHAO_SEND_RATE_PER_IP": "1000000",
    "ASHAO_SEND_BURST_PER_IP": "1000000",
}
"""Per-address limits lifted: they are there for the internet, and a benchmark's load is all loopback."""


@dataclass(slots=True)
class Network:
    """A running network: its processes, and the addresses of its cores and facades."""

    net: LocalNetwork
    cores: list[str]
    facades: list[str]

    def start_workers(self, n: int, prefix: str, *args: str) -> None:
        """``n`` worker agents with ``args``, each preferring another core (they fail over along the list)."""
        for i in range(n):
            self.net.start_worker(f"{prefix}-{i}", *args, cores=preferring(self.cores, i))


@contextlib.contextmanager
def scaled_network(
    extra_env: dict[str, str] | None = None, *, cores: int = 1, facades: int = 1
) -> Iterator[Network]:
    """``cores`` cores and ``facades`` facades on free loopback ports, with a throw-away data directory
    (each core its own; ``ASHAO_STORE``/``ASHAO_BUS`` in ``extra_env`` make several cores one cluster).
    Each facade prefers another core."""
    with tempfile.TemporaryDirectory(prefix="ashao-bench-") as tmp:
        core_addrs = [f"127.0.0.1:{free_port()}" for _ in range(cores)]
        facade_addrs = [f"127.0.0.1:{free_port()}" for _ in range(facades)]
        net = LocalNetwork(
            data_dir=Path(tmp),
            http_addr=facade_addrs[0],
            grpc_addr=core_addrs[0],
            # Every client of a benchmark is one loopback address: no per-address caps here.
            extra_env={**UNCAPPED, **(extra_env or {})},
            quiet=os.environ.get("ASHAO_BENCH_VERBOSE", "") == "",
        )
        try:
            for i, addr in enumerate(core_addrs):
                name = f"core-{i + 1}" if cores > 1 else "core"
                data_dir = Path(tmp) / name if i else Path(tmp)
                net.start_core(name=name, grpc_addr=addr, data_dir=data_dir)
            for i, addr in enumerate(facade_addrs):
                name = f"facade-{i + 1}" if facades > 1 else "facade"
                net.start_facade(name=name, http_addr=addr, cores=preferring(core_addrs, i))
            yield Network(net, core_addrs, facade_addrs)
        finally:
            net.stop()


@contextlib.contextmanager
def network(extra_env: dict[str, str] | None = None) -> Iterator[LocalNetwork]:
    """Core + facade on free loopback ports with a throw-away data directory."""
    with scaled_network(extra_env) as n:
        yield n.net


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
    """CPU used by each process of a network (and this one) between ``start()`` and ``stop()``.

    ``extra``: more processes to measure, by name; each a function giving its current pids (a name may
    cover several processes, such as the server processes of one PostgreSQL database).
    """

    def __init__(self, net: LocalNetwork, extra: dict[str, Callable[[], list[int]]] | None = None) -> None:
        loadgen = os.getpid()
        self._pids: dict[str, Callable[[], list[int]]] = {"loadgen": lambda: [loadgen]}
        for name, proc in net.children:
            key = name.split()[0]
            n = sum(1 for k in self._pids if k.startswith(key))
            self._pids[f"{key}{n}" if n else key] = lambda pid=proc.pid: [pid]
        self._pids.update(extra or {})
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}
        """CPU seconds each process used between the last ``start()`` and ``stop()``."""

    def _read(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for k, pids in self._pids.items():
            out[k] = {}
            for pid in pids():
                with contextlib.suppress(OSError):
                    out[k][pid] = cpu_seconds(pid)
        return out

    def add(self, name: str, pid: int) -> None:
        """Measure another process too (one the network did not start)."""
        self._pids[name] = lambda: [pid]

    def start(self) -> None:
        """Begin measuring."""
        self._t0 = time.perf_counter()
        self._start = self._read()

    def stop(self) -> dict[str, float]:
        """Per process, the share of one core used since ``start()``, in percent."""
        wall = time.perf_counter() - self._t0
        now = self._read()
        # a process that came or went meanwhile counts for what was seen of it at both ends
        self.seconds = {
            k: sum(v - self._start.get(k, {}).get(pid, v) for pid, v in now[k].items()) for k in self._pids
        }
        return {f"cpu_{k}_pct": used / wall * 100 for k, used in self.seconds.items()}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop (as the processes under test are), so that what it costs per
    event distorts the figures as little as possible."""
    import uvloop

    return uvloop.run(coro)
