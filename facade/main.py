"""Entry point of the facade process (also ``ashao facade``)."""

from __future__ import annotations

import argparse
import logging
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from facade.app import create_app
from facade.config import FacadeSettings


def split_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → (host, port); ValueError if malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not host:port: {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse(argv: list[str] | None) -> FacadeSettings:
    """Settings from the environment, overridden by flags."""
    p = argparse.ArgumentParser(prog="ashao facade", description="Run the ashao HTTP/SSE facade.")
    p.add_argument("--http-addr", help="listen address host:port (env ASHAO_HTTP_ADDR)")
    p.add_argument("--core", dest="grpc_addr", help="the core's gRPC address (env ASHAO_GRPC_ADDR)")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in {"http_addr": args.http_addr, "grpc_addr": args.grpc_addr}.items() if v}
    return FacadeSettings(**overrides)


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
    """How the facade is served: uvloop and httptools, no access log, and forwarded headers honoured
    only when the deployment says a trusted proxy sits in front (else anyone could pick their IP)."""
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
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        proxy_headers=settings.trust_forwarded,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        timeout_keep_alive=30,
        backlog=4096,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse(argv)
    try:
        host, port = split_addr(settings.http_addr)
    except ValueError as exc:
        print(f"ashao facade: ASHAO_HTTP_ADDR: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    config = uvicorn_config(app, settings, host=host, port=port)
    print(f"ashao facade: HTTP on http://{settings.http_addr} (core at {settings.grpc_addr})", flush=True)
    _Server(config, app).run()
    return 0
