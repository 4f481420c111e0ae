"""Every answer says what the gateway added (``x-ashao-overhead-ms``), and /metrics counts the same
figure per surface."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.facade.test_relay_api import chat, relay, sse
from tests.helpers.core import connect_worker
from tests.helpers.metrics import scrape, value
from tests.helpers.sse import read_sse
from tests.helpers.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)


def overhead_ms(headers: object) -> float:
    """The header's value: a non-negative number of milliseconds."""
    raw = headers["x-ashao-overhead-ms"]  # type: ignore[index]
    ms = float(raw)
    assert ms >= 0, raw
    return ms


def counted(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], surface: str) -> float:
    return value(got, "ashao_facade_overhead_seconds_count", surface=surface)


async def test_relay_network_and_openai_answers_carry_the_overhead_and_count_it(tmp_path: Path) -> None:
    async with FakeUpstream(["a ", "b"]).running() as up, relay(tmp_path, ("hosted", up)) as s:
        before = await scrape(f"{s.facade.url}/metrics")
        surfaces = ("relay", "network", "network_stream", "openai")
        assert [counted(before, surface) for surface in surfaces] == [0, 0, 0, 0]

        resp, events = await sse(s.http, chat())
        assert resp.status_code == 200 and events[-1]["event"] == "done"
        overhead_ms(resp.headers)
        whole_relay = await s.http.post("/chat", json=chat())
        assert whole_relay.status_code == 200, whole_relay.text
        overhead_ms(whole_relay.headers)

        worker = await connect_worker(s.core)
        sent = await s.http.post("/api/chat/send", json={"tier": "free", "content": "hi"})
        assert sent.status_code == 200
        overhead_ms(sent.headers)
        job = sent.json()["jobId"]
        reader = asyncio.create_task(read_sse(s.http, f"/api/chat/stream?jobId={job}"))
        await worker.assignment()
        await worker.tokens(job, ["x"])
        await worker.complete(job)
        await asyncio.wait_for(reader, 10)
        async with s.http.stream("GET", "/api/chat/stream", params={"jobId": job}) as streamed:
            assert streamed.status_code == 200
            overhead_ms(streamed.headers)
            await streamed.aread()

        async def answer() -> None:
            a = await worker.assignment()
            await worker.tokens(a.job_id, ["y"])
            await worker.complete(a.job_id)

        answering = asyncio.create_task(answer())
        whole = await s.http.post(
            "/v1/chat/completions",
            json={"model": "ashao-free", "messages": [{"role": "user", "content": "hi"}]},
        )
        await asyncio.wait_for(answering, 10)
        assert whole.status_code == 200, whole.text
        overhead_ms(whole.headers)

        after = await scrape(f"{s.facade.url}/metrics")
        assert counted(after, "relay") == 2
        assert counted(after, "network") == 1
        assert counted(after, "network_stream") == 2
        assert counted(after, "openai") == 1
        assert value(after, "ashao_facade_overhead_seconds_sum", surface="relay") >= 0
