"""Entry point of the core process (also ``ashao core``)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from pathlib import Path

from core.app import CoreApp
from core.config import CoreSettings


def parse(argv: list[str] | None) -> CoreSettings:
    """Settings from the environment, overridden by flags."""
    p = argparse.ArgumentParser(prog="ashao core", description="Run the ashao core (gRPC).")
    p.add_argument("--grpc-addr", help="listen address host:port (env ASHAO_GRPC_ADDR)")
    p.add_argument("--data-dir", type=Path, help="data directory (env ASHAO_DATA_DIR)")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in {"grpc_addr": args.grpc_addr, "data_dir": args.data_dir}.items() if v}
    return CoreSettings(**overrides)


async def serve(settings: CoreSettings, *, ready: asyncio.Event | None = None) -> None:
    """Run the core until SIGINT/SIGTERM."""
    app = CoreApp(settings)
    await app.start()
    gc.freeze()  # what start-up built lives for good: keep it out of every later collection
    print(f"ashao core: gRPC on {app.address}", flush=True)
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
