"""The composition root of the facade: settings → core client → routers → app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Route

from ashao_common import gcpause
from ashao_common.tracing import Tracer
from facade import docs, webpage
from facade.client import CoreClient
from facade.config import FacadeSettings
from facade.fastpath import FastPaths
from facade.http import JSON
from facade.limits import BodyLimit
from facade.network import account, chat, treasury, workers
from facade.network import errors as network_errors
from facade.network.send_path import SEND_PATH, serve_send
from facade.observe import TRACED, Observe, facade_registry, metrics_page
from facade.openai import catalog as openai_catalog
from facade.openai import chat as openai_chat
from facade.openai import errors as openai_errors
from facade.relay import errors as relay_errors
from facade.relay import routes as relay

log = logging.getLogger("ashao.facade")

CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Last-Event-ID",
    "Idempotency-Key",
    "traceparent",
    "tracestate",
    # what the official OpenAI SDK for JavaScript sends from a browser (dangerouslyAllowBrowser)
    "OpenAI-Organization",
    "OpenAI-Project",
    "X-Stainless-Arch",
    "X-Stainless-Lang",
    "X-Stainless-OS",
    "X-Stainless-Package-Version",
    "X-Stainless-Retry-Count",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Timeout",
)
"""Request headers a page on an allowed origin may send (every surface: ``/api``, ``/v1``, the relay)."""
CORS_EXPOSED_HEADERS = (
    relay_errors.SIGNATURE_HEADER,
    relay_errors.KEY_ID_HEADER,
    "X-Ashao-Model-Id",
    "Retry-After",
    "x-should-retry",
)
"""Response headers such a page may read: the relay's signature, the waits and retry advice."""

DESCRIPTION = """\
Two surfaces over one gRPC core.

**Network API** (`/api/…`): chat send and its Server-Sent Events stream, the worker pull path,
network stats, sign-in, credits, treasury, staking and images. Errors are `{"error": string}` with
the HTTP status; auth is the session cookie set by `/api/auth/verify` (or `Authorization: Bearer`
with an API key).

**OpenAI-compatible API** (`/v1/…`): `POST /v1/chat/completions` (whole or streamed), `GET /v1/models`
(the tiers as models: `ashao-free`, `ashao-pro`, …) and `POST /v1/images/generations`, over the same
jobs, ledger and workers; point an OpenAI SDK's `base_url` at `/v1`. Errors are OpenAI's
`{"error": {message, type, param, code}}`; auth is `Authorization: Bearer <API key>` (`anonymous` for
the free model without one).

**Relay API** (`/chat`, `/chat/stream`, `/health`, `/self`, `/pricing`, `/sustainability`, `/vitals`,
`/sensorium`, `/registry`, `/ledger/safety/…`): every failure is a structured envelope, and every
body the core produces is signed (`X-Ashao-Signature`, `X-Ashao-Key-Id`; key in `/registry`).
"""


def _is_network(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith(openai_errors.PREFIX)


def _allowed(routes: list[Route], path: str) -> str:
    """The methods of the resource at ``path``, for a 405's Allow: every route of the most specific
    path template matching it (Starlette names only the first route's, and a resource may have
    several: ``GET`` and ``POST /api/keys``; ``/api/images/generate`` is that resource, not an image)."""
    matching = [r for r in routes if r.methods and r.path_regex.match(path)]
    if not matching:
        return ""
    template = min(matching, key=lambda r: r.path.count("{")).path
    return ", ".join(sorted({m for r in matching if r.path == template for m in r.methods or ()}))


_OPENAI_CODES = {404: "unknown_url", 405: "method_not_allowed"}


def create_app(settings: FacadeSettings, *, tracer: Tracer | None = None) -> FastAPI:
    """The ASGI app; its lifespan opens (and closes) the connection to the core. ``tracer``: the
    process's tracer while tracing is on (``ashao_common.tracing.configure``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gcpause.watch(settings.gc_log)
        core = CoreClient(settings, tracer=tracer)
        core.start()
        app.state.core = core
        gcpause.settle()  # what start-up built lives for good: out of every later collection; rarer ones
        try:
            yield
        finally:
            await core.close()

    app = FastAPI(
        title="ashao", description=DESCRIPTION, version="1", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    routers = [
        chat.router,
        workers.router,
        account.router,
        treasury.router,
        openai_chat.router,
        openai_catalog.router,
        relay.router,
    ]
    for router in routers:
        app.include_router(router)
    docs.install(app)
    docs.install_reference(app)
    webpage.install(app)
    statuses: dict[int, int] = {}
    if settings.metrics_path:
        registry = facade_registry(statuses, lambda: getattr(app.state, "core", None))
        app.add_route(settings.metrics_path, metrics_page(registry), ["GET"], include_in_schema=False)
    routes = [r for r in app.routes if isinstance(r, Route)]
    routes += [r for router in routers for r in router.routes if isinstance(r, Route)]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = str(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(routes, request.scope["path"])
        if _is_network(request):
            body = {"error": detail.lower() if detail else "error"}
            return JSON(body, status_code=exc.status_code, headers=headers)
        if _is_openai(request):
            response = openai_errors.error(
                exc.status_code, detail or "error", code=_OPENAI_CODES.get(exc.status_code)
            )
            response.headers.update(headers)
            return response
        kind = "not_found" if exc.status_code == 404 else "invalid_request"
        return Response(
            orjson.dumps({"error": kind, "detail": detail}),
            status_code=exc.status_code,
            media_type="application/json",
            headers=headers,
        )

    async def server_error(request: Request, exc: Exception) -> Response:
        if _is_network(request):
            return network_errors.unexpected(exc)
        if _is_openai(request):
            return openai_errors.unexpected(exc)
        return relay_errors.unexpected(exc)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)

    # Outermost last: CORS (when set), then the body limit, then the fast paths (facade.fastpath); so a
    # 413 still carries CORS headers, and the bodiless stream route passes the limit with a glance at
    # its headers.
    app.add_middleware(
        FastPaths,
        routes={
            ("POST", SEND_PATH): serve_send,
            ("GET", chat.STREAM_PATH): chat.serve_stream,
            ("POST", relay.STREAM_PATH): relay.serve_stream,
        },
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=list(CORS_REQUEST_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=600,
        )
    # Outermost of all: it sees every status, the 413s and CORS answers included.
    app.add_middleware(Observe, statuses=statuses, tracer=tracer, traced=TRACED)
    return app
