"""What the gateway adds to a request: the time spent in ashao before the first byte from the upstream
or the worker could reach the caller.

Every answer of the relay's and the network's chat routes (sends and streams, and of
``/v1/chat/completions``) carries
it as ``x-ashao-overhead-ms``, and the same figure is counted per surface in a histogram that
``/metrics`` shows (``ashao_facade_overhead_seconds``):

- relay: from the request's arrival to its stream's head going out, less the time the core waited on
  providers for the first chunk (which the core reports with ``admitted``);
- network and OpenAI-compatible: from the request's arrival until the core has the job durable and
  handed to a worker (the worker's own time comes after it);
- network_stream (``GET /api/chat/stream``): from the request's arrival until the facade follows the
  job at the core and the stream's head can go out.

The clock starts in the outermost middleware (``stamp``), so body parsing and routing count too.
"""

from __future__ import annotations

import time

from prometheus_client.metrics_core import HistogramMetricFamily
from starlette.types import Scope

from ashao_common.metrics import Histogram

HEADER = "x-ashao-overhead-ms"
ARRIVED = "ashao.arrived"
"""The scope key holding the request's arrival (``time.perf_counter()``)."""
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Bucket bounds (seconds): the gateway's own time is counted in fractions of a millisecond."""
SURFACES = ("relay", "network", "network_stream", "openai")


def stamp(scope: Scope) -> None:
    """Note when a request arrived (called first thing for every HTTP request)."""
    scope[ARRIVED] = time.perf_counter()


class Overhead:
    """The overhead of each answer, per surface."""

    def __init__(self) -> None:
        self.by_surface = {s: Histogram(BUCKETS) for s in SURFACES}

    def measure(self, surface: str, scope: Scope, *, waited_s: float = 0.0) -> dict[str, str]:
        """Count the time since ``scope``'s request arrived, less ``waited_s`` spent waiting on an
        upstream; returns the header that tells the caller."""
        now = time.perf_counter()
        seconds = max(0.0, now - scope.get(ARRIVED, now) - max(0.0, waited_s))
        self.by_surface[surface].observe(seconds)
        return {HEADER: f"{seconds * 1000:.3f}"}

    def family(self) -> HistogramMetricFamily:
        """The Prometheus form: one histogram per surface."""
        family = HistogramMetricFamily(
            "ashao_facade_overhead_seconds",
            "Time spent in ashao before the first byte from the upstream or worker, per surface.",
            labels=["surface"],
        )
        for surface, h in self.by_surface.items():
            family.add_metric([surface], h.buckets(), h.total)
        return family
