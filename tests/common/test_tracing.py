"""Tracing is configured by the standard OTEL_* environment, off unless it names an exporter, and off
(never failing) when OpenTelemetry is missing or misconfigured."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest

from ashao_common.tracing import configure, exporter_entry_points
from tests.helpers.otlp import OtlpCollector

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_EXPORTER": ""},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_off_unless_an_exporter_is_named(env: dict[str, str]) -> None:
    assert configure("ashao-test", env) is None


def test_otlp_means_http_protobuf_unless_the_protocol_says_grpc() -> None:
    assert exporter_entry_points("otlp", "") == ["otlp_proto_http"]
    assert exporter_entry_points("otlp", "http/protobuf") == ["otlp_proto_http"]
    assert exporter_entry_points("otlp", "grpc") == ["otlp_proto_grpc"]
    assert exporter_entry_points(" console , none,otlp", "") == ["console", "otlp_proto_http"]
    with pytest.raises(ValueError, match="unsupported protocol"):
        exporter_entry_points("otlp", "http/json")


def test_a_misconfiguration_leaves_tracing_off_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "ashao.tracing"):
        assert configure("ashao-test", {"OTEL_TRACES_EXPORTER": "no_such_exporter"}) is None
        assert "no span exporter 'no_such_exporter'" in caplog.text
        assert (
            configure("ashao-test", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "x"})
            is None
        )
        assert "unsupported protocol 'x'" in caplog.text


def test_without_opentelemetry_installed_tracing_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # an import of it fails
    with caplog.at_level(logging.WARNING, "ashao.tracing"):
        assert configure("ashao-test", {"OTEL_TRACES_EXPORTER": "console"}) is None
    assert "OpenTelemetry is not installed" in caplog.text


def test_the_console_exporter_is_there_for_the_asking() -> None:
    tracer = configure("ashao-test", {"OTEL_TRACES_EXPORTER": "console"})
    assert tracer is not None
    tracer.shutdown()


async def test_spans_go_over_otlp_with_their_parents_and_the_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with OtlpCollector().running() as collector:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        tracer = configure("ashao-test")
        assert tracer is not None
        with tracer.active(tracer.start("outer", kind="server")) as outer:
            carrier = tracer.inject()
            inner = tracer.start("inner", attributes={"n": 3})
            inner.end()
        continued = tracer.start("continued", parent=tracer.extract(carrier), kind="consumer")
        tracer.fail(continued, "it broke")
        continued.end()
        await asyncio.to_thread(tracer.shutdown)  # exports what is buffered (the collector answers meanwhile)
    spans = {s.name: s for s in collector.spans}
    assert set(spans) == {"outer", "inner", "continued"}
    assert {s.service for s in spans.values()} == {"ashao-test"}
    assert carrier["traceparent"].startswith(f"00-{spans['outer'].trace_id}-{spans['outer'].span_id}-")
    assert spans["inner"].parent_id == spans["continued"].parent_id == spans["outer"].span_id
    assert spans["inner"].attributes == {"n": 3} and spans["outer"].kind == "server"
    assert spans["continued"].kind == "consumer" and spans["continued"].error
    assert not outer.is_recording()  # ended with its block


async def test_the_service_name_of_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    async with OtlpCollector().running() as collector:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "core-eu-1")
        tracer = configure("ashao-core")
        assert tracer is not None
        tracer.start("one").end()
        await asyncio.to_thread(tracer.shutdown)
    assert [(s.service, s.name) for s in collector.spans] == [("core-eu-1", "one")]
