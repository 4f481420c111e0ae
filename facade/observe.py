"""What the facade shows of itself: HTTP statuses counted, the traced routes' server spans, and the
``/metrics`` page.

``Observe`` is the outermost pure ASGI middleware. It counts every response's status as its head
goes out (a dictionary increment per request; the SSE writes that follow pass through a plain
function call, no coroutine of its own), and, while tracing is on, opens a server span for the traced
routes (``POST /api/chat/send``) under the caller's ``traceparent``; the route's call to the core
continues it. The collector reads the facade's own figures (SSE clients, subscriptions, streams to
the core, responses by status) only when Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ashao_common.metrics import exposition, process_registry
from ashao_common.tracing import Tracer
from facade.overhead import stamp

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from facade.client import CoreClient

TRACED = frozenset({("POST", "/api/chat/send"), ("POST", "/v1/chat/completions")})
"""(method, path) of the routes that open a span: those that hand work to the core."""


class Observe:
    """Counts responses by status; traces the traced routes while tracing is on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        statuses: dict[int, int],
        tracer: Tracer | None,
        traced: frozenset[tuple[str, str]],
    ) -> None:
        self.app = app
        self._statuses = statuses
        self._tracer = tracer
        self._traced = traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, counting its status (a failure that escapes every handler counts as 500)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stamp(scope)
        statuses = self._statuses
        started = 0

        def counted(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = message["status"]
                statuses[started] = statuses.get(started, 0) + 1
            return send(message)

        tracer = self._tracer
        try:
            if tracer is None or (scope["method"], scope["path"]) not in self._traced:
                await self.app(scope, receive, counted)
                return
            with tracer.active(_server_span(tracer, scope)) as span:
                await self.app(scope, receive, counted)
                span.set_attribute("http.response.status_code", started)
                if started >= 500:
                    tracer.fail(span, f"HTTP {started}")
        except Exception:
            if not started:
                statuses[500] = statuses.get(500, 0) + 1
            raise


def _server_span(tracer: Tracer, scope: Scope) -> Span:
    """The span of a request, under the trace context its headers carry (if any)."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    method, path = scope["method"], scope["path"]
    return tracer.start(
        f"{method} {path}",
        parent=tracer.extract(headers),
        kind="server",
        attributes={"http.request.method": method, "url.path": path, "http.route": path},
    )


class FacadeCollector(Collector):
    """The facade's figures, read from the connection to the core when scraped."""

    def __init__(self, *, statuses: dict[int, int], core: Callable[[], CoreClient | None]) -> None:
        """``core``: the app's connection to the core (None outside its lifespan)."""
        self._statuses = statuses
        self._core = core

    def collect(self) -> Iterator[Metric]:
        """The metric families, as they stand now."""
        responses = CounterMetricFamily(
            "ashao_facade_http_responses", "HTTP responses by status code.", labels=["status"]
        )
        for status, n in sorted(self._statuses.items()):
            responses.add_metric([str(status)], n)
        yield responses
        core = self._core()
        if core is None:  # not started yet (or stopped)
            return
        yield GaugeMetricFamily(
            "ashao_facade_sse_clients",
            "SSE streams open to clients (chat and relay).",
            value=len(core.watchdog),
        )
        yield GaugeMetricFamily(
            "ashao_facade_subscriptions",
            "Jobs followed for SSE clients over the stream to the core.",
            value=len(core.mux),
        )
        yield GaugeMetricFamily(
            "ashao_facade_sse_direct",
            "Subscriptions whose frames are written straight to the client's socket.",
            value=core.mux.direct,
        )
        yield CounterMetricFamily(
            "ashao_facade_sse_cut_off",
            "SSE clients cut off for falling too far behind.",
            value=core.mux.cut_off,
        )
        yield CounterMetricFamily(
            "ashao_facade_sse_stalled",
            "SSE clients disconnected for not reading.",
            value=core.watchdog.disconnected,
        )
        up = GaugeMetricFamily(
            "ashao_facade_core_stream_up",
            "Whether each stream to the core is up (1) or not (0).",
            labels=["stream"],
        )
        up.add_metric(["send"], 1.0 if core.sender.connected else 0.0)
        up.add_metric(["subscribe"], 1.0 if core.mux.connected else 0.0)
        yield up
        yield core.sender.seconds.family(
            "ashao_facade_send_seconds",
            "A send relayed to the core -> the core's answer (durable, or refused).",
        )
        yield core.overhead.family()


def metrics_page(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` endpoint serving ``registry``."""

    async def metrics(request: Request) -> Response:
        """The metrics in Prometheus' text format (or OpenMetrics, when asked for)."""
        body, content_type = exposition(registry, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    return metrics


def facade_registry(statuses: dict[int, int], core: Callable[[], CoreClient | None]) -> CollectorRegistry:
    """The facade's metrics: the process's own figures and the facade's."""
    registry = process_registry()
    registry.register(FacadeCollector(statuses=statuses, core=core))
    return registry
