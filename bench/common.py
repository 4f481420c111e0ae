"""Shared pieces of the benchmarks: a local network on free ports, percentiles, process memory."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ashao_cli.devnet import LocalNetwork, free_port


@contextlib.contextmanager
def network(extra_env: dict[str, str] | None = None) -> Iterator[LocalNetwork]:
    """Core + facade on free loopback ports with a throw-away data directory."""
    with tempfile.TemporaryDirectory(prefix="ashao-bench-") as tmp:
        net = LocalNetwork(
            data_dir=Path(tmp),
            http_addr=f"127.0.0.1:{free_port()}",
            grpc_addr=f"127.0.0.1:{free_port()}",
            extra_env=extra_env,
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
