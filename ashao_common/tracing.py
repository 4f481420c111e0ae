"""Tracing: OpenTelemetry spans when the standard ``OTEL_*`` environment asks for them, nothing otherwise.

Tracing is off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or any other
installed exporter's entry point name); then ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*`` … are read by the SDK as usual.
``otlp`` means OTLP over HTTP/protobuf (the specification's default) unless
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL`` says ``grpc``.

Off, ``configure()`` returns None and the processes keep no tracer at all: every traced spot is one
``is not None`` test, so the token path pays nothing. The SDK is imported only when tracing is on, so
the processes run without it installed (it comes with the ``otel`` extra).

Contexts travel as W3C ``traceparent``/``tracestate`` entries (the ``OTEL_PROPAGATORS`` choice): in
gRPC metadata, in the ``trace_context`` map of a relayed send and of a worker's assignment, and in
the headers of a worker's upstream request.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

log = logging.getLogger("ashao.tracing")

EXPORTER_GROUP = "opentelemetry_traces_exporter"
"""The entry point group OpenTelemetry's span exporters register under."""
OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}

Carrier = dict[str, str]
"""Trace context as text entries (``traceparent``, ``tracestate``)."""
Attributes = Mapping[str, str | bool | int | float]
"""Span attributes."""


class Tracer:
    """The process's tracer; exists only while tracing is on. Spans are plain OpenTelemetry spans."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._provider = provider
        self._tracer = provider.get_tracer("ashao")
        self._context = context
        self._propagate = propagate
        self._trace = trace
        self._kinds = {
            "internal": SpanKind.INTERNAL,
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
            "producer": SpanKind.PRODUCER,
            "consumer": SpanKind.CONSUMER,
        }
        self._status = Status
        self._error = StatusCode.ERROR

    def start(
        self,
        name: str,
        *,
        parent: Context | None = None,
        kind: str = "internal",
        attributes: Attributes | None = None,
    ) -> Span:
        """A started span, child of ``parent`` (a context from ``extract``/``context_of``) or, if None,
        of the span current in this task."""
        return self._tracer.start_span(name, context=parent, kind=self._kinds[kind], attributes=attributes)

    def extract(self, carrier: Mapping[str, str]) -> Context:
        """The context a carrier holds (an empty one when it holds none: the span starts a trace)."""
        return self._propagate.extract(dict(carrier))

    def context_of(self, span: Span) -> Context:
        """A context whose current span is ``span`` (to start its children from anywhere)."""
        return self._trace.set_span_in_context(span)

    def inject(self, span: Span | None = None) -> Carrier:
        """The carrier of ``span`` (or of the span current in this task)."""
        carrier: Carrier = {}
        self._propagate.inject(carrier, context=self.context_of(span) if span is not None else None)
        return carrier

    @contextlib.contextmanager
    def active(self, span: Span) -> Iterator[Span]:
        """Make ``span`` the current span of this task for the block (its children start under it).
        An exception leaving the block marks it failed; the span is ended after the block."""
        token = self._context.attach(self.context_of(span))
        try:
            yield span
        except BaseException as exc:
            self.fail(span, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._context.detach(token)
            span.end()

    def current(self) -> Span:
        """The span current in this task (a non-recording one if there is none)."""
        return self._trace.get_current_span()

    def fail(self, span: Span, message: str) -> None:
        """Mark ``span`` failed, saying why."""
        span.set_status(self._status(self._error, message))

    def shutdown(self) -> None:
        """Export what is still buffered, then stop the exporters (blocks, bounded by the SDK's timeouts)."""
        self._provider.shutdown()


def exporter_entry_points(names: str, protocol: str) -> list[str]:
    """The exporter entry point names ``OTEL_TRACES_EXPORTER`` (``names``) asks for; ``otlp`` resolves
    by ``protocol``. Empty (tracing off) for an unset or ``none`` value. ValueError for an unknown
    protocol."""
    out = []
    for raw in names.split(","):
        name = raw.strip()
        if not name or name.lower() == "none":
            continue
        if name == "otlp":
            chosen = OTLP_BY_PROTOCOL.get(protocol.strip() or "http/protobuf")
            if chosen is None:
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}")
            name = chosen
        out.append(name)
    return out


def configure(service: str, environ: Mapping[str, str] | None = None) -> Tracer | None:
    """The process's tracer if the environment asks for traces, else None (tracing off).

    ``service`` is the ``service.name`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES``
    names one. A misconfiguration (an exporter that is not installed, a bad protocol) is logged and
    leaves tracing off: observability never stops the service from starting.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    try:
        names = exporter_entry_points(env.get("OTEL_TRACES_EXPORTER", ""), protocol)
    except ValueError as exc:
        log.error("tracing is off: %s", exc)
        return None
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed (pip install 'ashao[otel]'):"
            " tracing is off"
        )
        return None
    exporters: list[Any] = []
    for name in names:
        found = list(entry_points(group=EXPORTER_GROUP, name=name))
        if not found:
            log.error("no span exporter %r is installed; it is left out", name)
            continue
        try:
            exporters.append(found[0].load()())
        except Exception:
            log.exception("span exporter %r could not be set up; it is left out", name)
    if not exporters:
        log.error("tracing is off: none of the span exporters asked for could be set up")
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on: %s spans go to %s", resource.attributes.get("service.name"), ", ".join(names))
    return Tracer(provider)
