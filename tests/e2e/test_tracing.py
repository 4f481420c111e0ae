"""One chat request is one trace across the three real processes: the facade, the core and the worker
agent export their spans over OTLP/HTTP to a collector the test runs, and the spans join under the
trace context the client sent, in the expected parent/child tree; the core's and the facade's
/metrics count the same request."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ashao_cli.devnet import LocalNetwork
from tests.helpers.metrics import scrape, value
from tests.helpers.net import free_port
from tests.helpers.otlp import OtlpCollector, Span, tree
from tests.helpers.sse import sse
from tests.helpers.upstream import FakeUpstream
from tests.helpers.wait import eventually, eventually_async

pytestmark = pytest.mark.timeout(120)

WORDS = [f"w{i} " for i in range(40)]
"""The answer: more tokens than the trace has spans (the trace must not grow with the answer)."""


@pytest.fixture
async def collector() -> AsyncIterator[OtlpCollector]:
    async with OtlpCollector().running() as c:
        yield c


@pytest.fixture
async def traced_net(tmp_path: Path, collector: OtlpCollector) -> AsyncIterator[LocalNetwork]:
    """Core, facade and (started by the test) workers, all exporting spans to ``collector``."""
    net = LocalNetwork(
        data_dir=tmp_path / "data",
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        extra_env={
            "ASHAO_HEARTBEAT_INTERVAL_MS": "300",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # export within 50 ms of a span's end
            "ASHAO_METRICS_ADDR": f"127.0.0.1:{free_port()}",  # (the core's; the others ignore it)
        },
    )
    try:
        # (blocking waits for the ports: off the loop, which serves the collector meanwhile)
        await asyncio.to_thread(net.start_core)
        await asyncio.to_thread(net.start_facade)
        yield net
    finally:
        await asyncio.to_thread(net.stop, timeout=15)


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
    return found[0]


async def test_a_chat_request_is_one_trace_from_the_facade_through_the_core_to_the_worker(
    traced_net: LocalNetwork, collector: OtlpCollector
) -> None:
    async with (
        FakeUpstream(WORDS).running() as up,
        httpx.AsyncClient(base_url=f"http://{traced_net.http_addr}", timeout=15) as http,
    ):
        await asyncio.to_thread(
            traced_net.start_worker,
            "gpu-1",
            "--backend",
            "openai",
            "--upstream",
            f"http://127.0.0.1:{up.port}/v1",
            "--model",
            "tiny",
        )

        async def worker_ready() -> bool:
            return bool((await http.get("/api/stats")).json()["activeWorkers"] >= 1)

        await eventually_async(worker_ready, timeout=15)

        # The client is traced too: its context comes with the request, and the trace is its own.
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        r = await http.post(
            "/api/chat/send",
            json={"tier": "free", "content": "Say hello."},
            headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
        )
        assert r.status_code == 200
        job_id = r.json()["jobId"]
        events = await sse(http, job_id)
        assert events[-1][1] == {"type": "done", "tokens": len(WORDS)}

        def complete() -> bool:
            names = {(s.service, s.name) for s in collector.trace(trace_id)}
            return {("ashao-core", "job"), ("ashao-worker", "upstream chat completion")} <= names

        await eventually(complete, timeout=20)
        spans = collector.trace(trace_id)
        print(f"\ntrace {trace_id}:\n{tree(spans)}")

        # facade: the HTTP request under the client's span, and its call to the core under it
        request = one(spans, "ashao-facade", "POST /api/chat/send")
        assert (request.kind, request.parent_id) == ("server", client_span)
        assert request.attributes["http.response.status_code"] == 200
        call = one(spans, "ashao-facade", "ashao.v1.ChatService/SendMessage")
        assert (call.kind, call.parent_id) == ("client", request.span_id)

        # core: the send under the facade's call; the job under the send; its phases under the job
        send = one(spans, "ashao-core", "ashao.v1.ChatService/SendMessage")
        assert (send.kind, send.parent_id) == ("server", call.span_id)
        job = one(spans, "ashao-core", "job")
        assert job.parent_id == send.span_id
        assert job.attributes["ashao.job.id"] == job_id and job.attributes["ashao.state"] == "done"
        phases = [s for s in spans if s.parent_id == job.span_id]
        assert [s.name for s in sorted(phases, key=lambda s: s.start_ns)] == [
            "queue wait",
            "dispatch",
            "first token",
            "done",
            "settlement",
        ]
        assert all(s.service == "ashao-core" and not s.error for s in phases)
        dispatch = one(spans, "ashao-core", "dispatch")
        assert dispatch.kind == "producer" and dispatch.attributes["ashao.attempt"] == 1
        assert one(spans, "ashao-core", "done").attributes["ashao.tokens"] == len(WORDS)

        # worker: the job continues the dispatch; the upstream call is its child, and its context went
        # to the model server with the request
        run = one(spans, "ashao-worker", "job")
        assert (run.kind, run.parent_id) == ("consumer", dispatch.span_id)
        upstream = one(spans, "ashao-worker", "upstream chat completion")
        assert (upstream.kind, upstream.parent_id) == ("client", run.span_id)
        assert up.headers[0]["traceparent"] == f"00-{trace_id}-{upstream.span_id}-01"

        # a handful of spans per request, however long the answer: never one per token
        assert len(spans) == 11 < len(WORDS)
        assert not any(s.error for s in spans)

        # the same request, as the metrics of the core and the facade count it
        core = await scrape(f"http://{traced_net.env['ASHAO_METRICS_ADDR']}/metrics")
        assert value(core, "ashao_jobs_total", outcome="done") == 1
        assert value(core, "ashao_tokens_total") == len(WORDS)
        assert value(core, "ashao_time_to_first_token_seconds_count") == 1
        facade = await scrape(f"http://{traced_net.http_addr}/metrics")
        assert value(facade, "ashao_facade_send_seconds_count") == 1
        assert value(facade, "ashao_facade_http_responses_total", status="200") >= 2  # the send, the stream
