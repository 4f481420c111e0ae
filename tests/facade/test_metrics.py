"""The facade's /metrics: on the app (not in the API reference), every metric there, and the figures
moving with requests and streams."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.core import connect_worker
from tests.helpers.metrics import Samples, value
from tests.helpers.metrics import scrape as scrape_url
from tests.helpers.sse import read_sse
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)

NAMES = {
    "ashao_facade_http_responses_total",
    "ashao_facade_sse_clients",
    "ashao_facade_subscriptions",
    "ashao_facade_sse_cut_off_total",
    "ashao_facade_sse_stalled_total",
    "ashao_facade_core_stream_up",
    "ashao_facade_send_seconds_count",
    "process_resident_memory_bytes",
}


async def scrape(stack: Stack) -> Samples:
    return await scrape_url(f"{stack.facade.url}/metrics")


def responses(got: Samples, status: int) -> float:
    return got.get(("ashao_facade_http_responses_total", (("status", str(status)),)), 0.0)


async def test_metrics_are_served_beside_the_api_and_left_out_of_its_reference(stack: Stack) -> None:
    await eventually(
        lambda: stack.facade.core_client.sender.connected and stack.facade.core_client.mux.connected
    )
    await scrape(stack)
    got = await scrape(stack)  # (now with a response counted: the first scrape's)
    assert NAMES <= {name for name, _ in got}
    assert responses(got, 200) >= 1
    assert value(got, "ashao_facade_core_stream_up", stream="send") == 1
    assert value(got, "ashao_facade_core_stream_up", stream="subscribe") == 1
    doc = (await stack.http.get("/openapi.json")).json()
    assert "/metrics" not in doc["paths"]


async def test_figures_move_with_sends_streams_and_errors(stack: Stack) -> None:
    before = await scrape(stack)
    worker = await connect_worker(stack.core)
    r = await stack.http.post("/api/chat/send", json={"tier": "free", "content": "hi"})
    assert r.status_code == 200
    job = r.json()["jobId"]
    reader = asyncio.create_task(read_sse(stack.http, f"/api/chat/stream?jobId={job}"))
    await worker.assignment()
    await eventually(lambda: len(stack.facade.core_client.watchdog) == 1)
    streaming = await scrape(stack)
    assert value(streaming, "ashao_facade_sse_clients") == 1
    assert value(streaming, "ashao_facade_subscriptions") == 1
    await worker.tokens(job, ["a", "b"])
    await worker.complete(job)
    status, events = await asyncio.wait_for(reader, 10)
    assert status == 200 and events[-1]["data"] == {"type": "done", "tokens": 2}
    bad = await stack.http.post("/api/chat/send", json={"tier": "gold", "content": "hi"})
    assert bad.status_code == 400
    await eventually(lambda: len(stack.facade.core_client.watchdog) == 0)

    after = await scrape(stack)
    assert value(after, "ashao_facade_sse_clients") == 0
    # the send, the stream and the scrape while streaming answered 200; the bad send 400
    assert responses(after, 200) - responses(before, 200) >= 3
    assert responses(after, 400) - responses(before, 400) == 1
    sends = value(after, "ashao_facade_send_seconds_count") - value(before, "ashao_facade_send_seconds_count")
    assert sends == 2  # the core answered both (one refused)


async def test_the_metrics_path_is_a_setting(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, metrics_path="/internal/metrics")
    try:
        assert (await s.http.get("/metrics")).status_code == 404
        assert "ashao_facade_sse_clients" in (await s.http.get("/internal/metrics")).text
    finally:
        await stop_stack(s)
    off = await start_stack(tmp_path / "off", metrics_path="")
    try:
        assert (await off.http.get("/metrics")).status_code == 404
    finally:
        await stop_stack(off)
