"""The garbage collector's pauses: measured, and kept short.

A full collection walks every tracked object of the process; in a process holding thousands of
streams that is milliseconds during which no token moves. ``settle()`` is called once start-up is
over: it moves everything start-up built out of the collector's reach (``gc.freeze``) and raises the
thresholds, so young collections come ten times less often and the old generation is walked rarely
(what a token path allocates is short-lived bytes and messages, freed by reference counting; the
collector only has cycles to find).

``PauseWatch`` times every collection through ``gc.callbacks`` (two clock readings per collection,
not per allocation) into a histogram the ``/metrics`` page shows, and, when asked
(``ASHAO_GC_LOG``: a file), appends one line per collection: ``<unix ns> <generation> <pause µs>
<CPU µs>`` (the CPU time tells a long collection from a short one the machine interrupted).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import IO, Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ashao_common.metrics import Histogram

PAUSE_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
"""Bucket bounds (seconds) of collector pauses."""

THRESHOLDS = (700, 5, 1000)
"""(young, middle, old): allocations net of frees before a young collection (CPython's default is
700), young collections before a middle one, and middle ones before a full one (CPython: 10, 10)."""


def settle(thresholds: tuple[int, int, int] = THRESHOLDS) -> None:
    """Start-up is over: freeze what it built (it lives for good) and raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


class PauseWatch:
    """Times every collection of this process."""

    def __init__(self, log_path: str = "") -> None:
        self.pauses = Histogram(PAUSE_BUCKETS)
        """Every pause, seconds."""
        self.max_s = 0.0
        """The longest pause so far."""
        self._started = 0
        self._started_cpu = 0
        self._log: IO[str] | None = open(log_path, "a", buffering=1) if log_path else None

    def install(self) -> PauseWatch:
        """Start timing (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        """Stop timing and close the log."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter_ns()
            if self._log is not None:
                self._started_cpu = time.thread_time_ns()
            return
        pause_ns = time.perf_counter_ns() - self._started
        seconds = pause_ns / 1e9
        self.pauses.observe(seconds)
        if seconds > self.max_s:
            self.max_s = seconds
        if self._log is not None:
            cpu_us = (time.thread_time_ns() - self._started_cpu) // 1000
            self._log.write(f"{time.time_ns()} {info.get('generation', -1)} {pause_ns // 1000} {cpu_us}\n")

    def metrics(self, prefix: str) -> list[Metric]:
        """The pause histogram and the longest pause, named ``<prefix>_gc_pause_*``."""
        longest = GaugeMetricFamily(f"{prefix}_gc_pause_max_seconds", "Longest collector pause so far.")
        longest.add_metric([], self.max_s)
        return [
            self.pauses.family(f"{prefix}_gc_pause_seconds", "Collector pauses (every generation)."),
            longest,
        ]


_watch: list[PauseWatch] = []
"""The process's watch (the collector is process-wide, so there is at most one)."""


def watch(log_path: str = "") -> PauseWatch:
    """Time every collection of this process from now on (the first call decides the log file)."""
    if not _watch:
        _watch.append(PauseWatch(log_path).install())
    return _watch[0]


class PauseCollector(Collector):
    """The process's collector pauses on a ``/metrics`` page (nothing while no watch runs)."""

    def __init__(self, prefix: str = "ashao") -> None:
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        """Read the watch, if any."""
        for w in _watch:
            yield from w.metrics(self._prefix)
