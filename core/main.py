"""Entry point of the core process (also ``ashao core``)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from ashao_common import gcpause
from ashao_common.settings import load_settings
from ashao_common.tracing import configure as configure_tracing
from core.app import CoreApp
from core.config import CoreSettings


def parse(argv: list[str] | None, environ: Mapping[str, str] | None = None) -> CoreSettings:
    """Settings from flags over ``environ`` (``os.environ`` if None); exits with a usage error naming
    what does not validate."""
    return load_settings(
        CoreSettings, argv, prog="ashao core", description="Run the ashao core (gRPC).", environ=environ
    )


async def serve(settings: CoreSettings, *, ready: asyncio.Event | None = None) -> None:
    """Run the core until SIGINT/SIGTERM (traced while the ``OTEL_*`` environment asks for it)."""
    tracer = configure_tracing("ashao-core")
    try:
        await _serve(CoreApp(settings, tracer=tracer), ready)
    finally:
        if tracer is not None:
            await asyncio.to_thread(tracer.shutdown)  # the spans still buffered are exported


async def _serve(app: CoreApp, ready: asyncio.Event | None) -> None:
    gcpause.watch(app.settings.gc_log)
    await app.start()
    gcpause.settle()  # what start-up built lives for good: out of every later collection; rarer ones
    print(f"ashao core: gRPC on {app.address}", flush=True)
    if app.metrics_address:
        print(f"ashao core: metrics on http://{app.metrics_address}/metrics", flush=True)
    if ready is not None:
        ready.set()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(app.shutdown()))
    await app.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the core; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request is noise
    settings = parse(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(settings))
    return 0
