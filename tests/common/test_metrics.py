"""The histogram counts into Prometheus buckets, and the metrics listener serves /metrics and nothing
else, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ashao_common.metrics import MAX_HEAD_BYTES, Histogram, MetricsServer, process_registry
from tests.helpers.metrics import samples

pytestmark = pytest.mark.timeout(30)


def test_histogram_buckets_are_cumulative_with_the_bound_itself_inside() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    registry = CollectorRegistry(auto_describe=False)

    class One(Collector):
        def collect(self) -> Iterator[Metric]:
            yield h.family("x_seconds", "x")

    registry.register(One())
    got = samples(generate_latest(registry).decode())
    assert got[("x_seconds_bucket", (("le", "0.1"),))] == 2
    assert got[("x_seconds_bucket", (("le", "1.0"),))] == 4
    assert got[("x_seconds_bucket", (("le", "+Inf"),))] == 5
    assert got[("x_seconds_count", ())] == 5
    assert got[("x_seconds_sum", ())] == pytest.approx(8.65)


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    s = MetricsServer(process_registry(), "127.0.0.1:0")
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_serves_the_registry_at_metrics_only(server: MetricsServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as http:
        r = await http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert ("process_resident_memory_bytes", ()) in samples(r.text)
        om = await http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.endswith("# EOF\n")
        head = await http.head("/metrics")
        assert head.status_code == 200 and head.content == b""
        assert (await http.get("/other")).status_code == 404
        post = await http.post("/metrics")
        assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


async def test_an_oversized_or_garbled_request_is_refused(server: MetricsServer) -> None:
    async def raw(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return answer

    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (2 * MAX_HEAD_BYTES) + b"\r\n\r\n"
    assert (await raw(huge)).startswith(b"HTTP/1.1 431 ")
    assert (await raw(b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    # after all that, it still serves
    assert b"process_cpu_seconds_total" in await raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")


def test_a_malformed_address_is_refused() -> None:
    with pytest.raises(ValueError, match="host:port"):
        MetricsServer(process_registry(), "localhost")
