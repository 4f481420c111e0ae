"""An OTLP/HTTP trace collector for tests: a real HTTP server on loopback that keeps every span
exported to it, and the tree of one trace drawn as text."""

from __future__ import annotations

import contextlib
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers.serve import serving

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    """One exported span."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    error: bool
    attributes: dict[str, object] = field(default_factory=dict)


def _value(v: AnyValue) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(v)


class OtlpCollector:
    """Receives ``POST /v1/traces`` (protobuf, optionally gzipped) and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.port = 0

    @property
    def endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for exporters to send here."""
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for rs in export.resource_spans:
            attrs = {a.key: _value(a.value) for a in rs.resource.attributes}
            service = str(attrs.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            service=service,
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            error=s.status.code == 2,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OtlpCollector]:
        """Serve on 127.0.0.1 on a free port for the duration of the block."""
        app = Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])])
        async with serving(app) as self.port:
            yield self

    def trace(self, trace_id: str) -> list[Span]:
        """The spans of one trace, oldest first."""
        return sorted((s for s in self.spans if s.trace_id == trace_id), key=lambda s: s.start_ns)


def tree(spans: list[Span]) -> str:
    """The spans as an indented tree (children under their parent, oldest first), one per line:
    ``service: name [kind] duration``."""
    by_parent: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        by_parent.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(by_parent.get(parent, []), key=lambda s: s.start_ns):
            ms = (s.end_ns - s.start_ns) / 1e6
            flag = " ERROR" if s.error else ""
            lines.append(f"{'    ' * depth}{s.service}: {s.name} [{s.kind}] {ms:.2f} ms{flag}")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)
