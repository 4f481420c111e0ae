"""Entry point of the facade process (also ``ashao facade``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from types import FrameType

import uvicorn
from fastapi import FastAPI

from ashao_common.settings import load_settings
from ashao_common.tracing import configure as configure_tracing
from facade.app import create_app
from facade.config import FacadeSettings, split_addr
from facade.connections import guarded_protocol


def parse(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> FacadeSettings:
    """Settings from flags over ``environ`` (``os.environ`` if None); exits with a usage error naming
    what does not validate."""
    return load_settings(
        FacadeSettings,
        argv,
        prog="ashao facade",
        description="Run the ashao HTTP/SSE facade.",
        environ=environ,
    )


class _Server(uvicorn.Server):
    """Ends the SSE streams as soon as a stop is asked, so shutdown does not wait on them."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        core = getattr(self._app.state, "core", None)
        if core is not None:
            core.mux.end_all()
        super().handle_exit(sig, frame)


def uvicorn_config(app: FastAPI, settings: FacadeSettings, *, host: str, port: int) -> uvicorn.Config:
    """How the facade is served: uvloop and httptools (bounded per connection: see
    ``facade.connections``), no access log, and forwarded headers honoured only when the deployment
    says a trusted proxy sits in front (else anyone could pick their IP)."""
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=guarded_protocol(settings),
        ws="none",  # no WebSocket route: an upgrade request is plain HTTP (and its connection stays counted)
        lifespan="on",
        access_log=False,
        log_level="warning",
        proxy_headers=settings.trust_forwarded,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        timeout_keep_alive=max(1, math.ceil(settings.keep_alive_s)),  # (the protocol keeps the exact one)
        backlog=4096,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse(argv)
    host, port = split_addr(settings.http_addr)  # validated with the settings
    tracer = configure_tracing("ashao-facade")
    app = create_app(settings, tracer=tracer)
    config = uvicorn_config(app, settings, host=host, port=port)
    print(f"ashao facade: HTTP on http://{settings.http_addr} (core at {settings.grpc_addr})", flush=True)
    try:
        _Server(config, app).run()
    finally:
        if tracer is not None:
            tracer.shutdown()  # the spans still buffered are exported
    return 0
