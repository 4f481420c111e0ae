"""Prometheus metrics: a histogram cheap enough for the paths it measures, and a small HTTP listener.

The processes count what they do in plain Python (integers, ``Histogram`` below) where it happens;
a ``prometheus_client`` collector reads those figures only when Prometheus scrapes. Nothing on a
request's path touches ``prometheus_client`` or takes a lock.

``MetricsServer`` serves ``GET /metrics`` on the event loop of the process it measures, so collectors
read its state between two of its callbacks, never while it is half-changed (as a scrape from
another thread could). It is bounded: one request per connection, a small head, a deadline, and a
cap on connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import HistogramMetricFamily

log = logging.getLogger("ashao.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Bucket bounds (seconds) for latencies from a millisecond to a minute."""

MAX_HEAD_BYTES = 8192
READ_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 16


class Histogram:
    """Observations counted into fixed buckets (``le`` bounds), with their sum. One ``observe`` is a
    bisect and two additions; a collector turns it into a Prometheus histogram when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        """Observations per bucket (not cumulative); the last is above every bound."""
        self.total = 0.0
        """The sum of every observation."""

    def observe(self, value: float) -> None:
        """Count ``value``."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per ``le`` bound, ``+Inf`` last (as a Prometheus histogram has them)."""
        counts = list(self.counts)  # (another thread may be counting: read it once)
        buckets, running = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += n
            buckets.append((bound, float(running)))
        return buckets

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The Prometheus form (cumulative buckets, ``+Inf``, sum)."""
        return HistogramMetricFamily(name, documentation, buckets=self.buckets(), sum_value=self.total)


def process_registry() -> CollectorRegistry:
    """A registry holding the process's own figures (CPU, memory, open files, GC, Python version);
    the caller registers its collectors beside them. One per app, never the global one, so several
    apps in one process (as in tests) do not collide."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    from ashao_common.gcpause import PauseCollector  # (it builds on this module's Histogram)

    registry.register(PauseCollector())
    return registry


def exposition(registry: CollectorRegistry, accept: str) -> tuple[bytes, str]:
    """(body, content type) of a scrape asking with ``accept`` (the text format, or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _response(
    status: str, body: bytes, content_type: str, extra: Iterable[str] = (), *, with_body: bool = True
) -> bytes:
    head = [
        f"HTTP/1.1 {status}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body if with_body else b"")


class MetricsServer:
    """``GET /metrics`` for ``registry`` on ``host:port`` (port 0 picks one). ``start()``, ``close()``."""

    def __init__(self, registry: CollectorRegistry, addr: str) -> None:
        host, sep, port = addr.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"metrics address: not host:port: {addr!r}")
        self._host = host.strip("[]") or "127.0.0.1"
        self._port = int(port)
        self._registry = registry
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()
        self.port = 0
        """The port it listens on, once started."""

    async def start(self) -> int:
        """Listen; returns the port."""
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=MAX_HEAD_BYTES, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and end the scrapes in progress. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._open):
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)
        await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._open) >= MAX_CONNECTIONS or task is None:
            writer.close()
            return
        self._open.add(task)
        try:
            writer.write(await self._answer(reader))
            async with asyncio.timeout(READ_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._open.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.LimitOverrunError, ValueError):
            return _response("431 Request Header Fields Too Large", b"", "text/plain")
        except (TimeoutError, asyncio.IncompleteReadError):
            return _response("408 Request Timeout", b"", "text/plain")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return _response("400 Bad Request", b"", "text/plain")
        method, target, _ = parts
        if target.split("?", 1)[0] != "/metrics":
            return _response("404 Not Found", b"metrics are at /metrics\n", "text/plain")
        if method not in ("GET", "HEAD"):
            return _response("405 Method Not Allowed", b"", "text/plain", ["Allow: GET, HEAD"])
        accept = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        body, content_type = exposition(self._registry, accept)
        return _response("200 OK", body, content_type, with_body=method == "GET")
