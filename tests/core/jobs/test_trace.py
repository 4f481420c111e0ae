"""The spans of a job on a real core, through retries and failures: one phase at a time under the
job's span, each lost attempt marked, and the job's span ended (failed unless done) once its end is
durable. Spans are kept in memory by the OpenTelemetry SDK."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from ashao_common.tracing import Tracer
from tests.helpers.core import Core, connect_worker, core_settings, start_core, stop_core
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()


@pytest.fixture
async def core(tmp_path: Path, exporter: InMemorySpanExporter) -> AsyncIterator[Core]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    c = await start_core(core_settings(tmp_path, max_attempts=3), tracer=Tracer(provider))
    try:
        yield c
    finally:
        await stop_core(c)
        provider.shutdown()


def job_spans(exporter: InMemorySpanExporter, job_id: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The job's span and its phases, oldest first."""
    spans = exporter.get_finished_spans()
    [job] = [s for s in spans if s.name == "job" and s.attributes and s.attributes["ashao.job.id"] == job_id]
    assert job.context is not None
    phases = [s for s in spans if s.parent is not None and s.parent.span_id == job.context.span_id]
    return job, sorted(phases, key=lambda s: s.start_time or 0)


def ended(exporter: InMemorySpanExporter, job_id: str) -> bool:
    return any(
        s.name == "job" and s.attributes and s.attributes["ashao.job.id"] == job_id
        for s in exporter.get_finished_spans()
    )


async def test_a_lost_attempt_is_marked_and_the_next_one_traced_under_the_same_job(
    core: Core, exporter: InMemorySpanExporter
) -> None:
    w1 = await connect_worker(core, slots=1)
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    job_id, _ = await core.send(metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),))
    a1 = await w1.assignment()
    w2 = await connect_worker(core, slots=1)
    await w1.fail(job_id, retryable=True)
    a2 = await w2.assignment()
    assert (a1.attempt, a2.attempt) == (1, 2)
    # each assignment carries the context of its own dispatch
    assert a1.trace_context["traceparent"] != a2.trace_context["traceparent"]
    assert all(a.trace_context["traceparent"].startswith(f"00-{trace_id}-") for a in (a1, a2))
    await w2.tokens(job_id, ["a", "b"], offset=0)
    await w2.complete(job_id)
    await eventually(lambda: ended(exporter, job_id))

    job, phases = job_spans(exporter, job_id)
    assert [p.name for p in phases] == [
        "queue wait",
        "dispatch",
        "first token",
        "queue wait",
        "dispatch",
        "first token",
        "done",
        "settlement",
    ]
    lost = phases[2]
    assert lost.status.status_code == StatusCode.ERROR and lost.status.description == "boom"
    assert [p.attributes and p.attributes["ashao.attempt"] for p in phases if p.name == "dispatch"] == [1, 2]
    assert a2.trace_context["traceparent"].split("-")[2] == f"{phases[4].context.span_id:016x}"  # type: ignore[union-attr]
    assert job.attributes == {
        "ashao.job.id": job_id,
        "ashao.tier": "free",
        "ashao.state": "done",
        "ashao.attempts": 2,
        "ashao.tokens": 2,
    }
    assert job.status.status_code == StatusCode.UNSET
    # the job hangs under the core's span of the send, which continues the caller's context
    [send] = [s for s in exporter.get_finished_spans() if s.name == "ashao.v1.ChatService/SendMessage"]
    assert job.parent is not None and send.context is not None
    assert job.parent.span_id == send.context.span_id
    assert send.parent is not None and f"{send.parent.span_id:016x}" == parent
    assert f"{send.context.trace_id:032x}" == trace_id


async def test_a_failed_job_ends_its_span_failed_after_its_settlement(
    core: Core, exporter: InMemorySpanExporter
) -> None:
    w = await connect_worker(core, slots=1)
    job_id, _ = await core.send()
    await w.assignment()
    await w.fail(job_id, retryable=False)
    await eventually(lambda: ended(exporter, job_id))
    job, phases = job_spans(exporter, job_id)
    assert [p.name for p in phases] == ["queue wait", "dispatch", "first token", "settlement"]
    assert phases[-1].attributes == {"ashao.state": "failed"}
    assert job.status.status_code == StatusCode.ERROR
    assert job.attributes is not None and job.attributes["ashao.state"] == "failed"


async def test_a_refused_send_is_a_failed_span_and_no_job(core: Core, exporter: InMemorySpanExporter) -> None:
    with pytest.raises(Exception, match="tier"):
        await core.send(tier="gold")
    [send] = exporter.get_finished_spans()
    assert send.name == "ashao.v1.ChatService/SendMessage" and send.status.status_code == StatusCode.ERROR
