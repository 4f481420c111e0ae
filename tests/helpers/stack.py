"""A real core (grpc.aio on a loopback port, SQLite in a temporary directory) and the real facade served by
uvicorn on a loopback socket, both in the test's event loop; clients talk HTTP to the facade.

(httpx's ASGITransport buffers whole bodies, so SSE is tested over a real socket.)
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import grpc
import httpx
import uvicorn

from core.app import CoreApp
from facade.app import create_app
from facade.config import FacadeSettings
from facade.main import uvicorn_config
from tests.helpers.core import Core, core_settings, start_core, stop_core
from tests.helpers.net import free_port


class Facade:
    """A facade served on a loopback socket until ``stop()``."""

    def __init__(self, settings: FacadeSettings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn_config(self.app, settings, host="127.0.0.1", port=self.port))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        for _ in range(500):  # uvicorn offers a flag, not an event, for "started"
            if self._server.started:
                return
            await asyncio.sleep(0.01)
        raise RuntimeError("the facade did not start")

    @property
    def core_client(self) -> Any:
        return self.app.state.core

    async def stop(self) -> None:
        self.core_client.mux.end_all()
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)
        self._sock.close()


def facade_settings(core_addr: str, **overrides: Any) -> FacadeSettings:
    base: dict[str, Any] = {"http_addr": "127.0.0.1:0", "grpc_addr": core_addr, "call_timeout_s": 5.0}
    base.update(overrides)
    return FacadeSettings(**base)


class Stack:
    """A core and a facade in front of it, with an HTTP client."""

    def __init__(self, core: Core, facade: Facade, http: httpx.AsyncClient) -> None:
        self.core = core
        self.facade = facade
        self.http = http


async def start_stack(
    tmp_path: Path, core_overrides: dict[str, Any] | None = None, **facade_overrides: Any
) -> Stack:
    """Start a core on a free port and a facade in front of it."""
    overrides = {"grpc_addr": f"127.0.0.1:{free_port()}", **(core_overrides or {})}
    core = await start_core(core_settings(tmp_path, **overrides))
    facade = Facade(facade_settings(core.app.address, **facade_overrides))
    await facade.start()
    http = httpx.AsyncClient(base_url=facade.url, timeout=10)
    return Stack(core, facade, http)


async def stop_stack(stack: Stack) -> None:
    await stack.http.aclose()
    await stack.facade.stop()
    await stop_core(stack.core)


async def stop_core_keeping_port(s: Stack) -> CoreApp:
    """Stop the stack's core; returns a new (unstarted) core on the same address and data (for
    ``start_again``)."""
    settings = s.core.app.settings.model_copy(update={"grpc_addr": s.core.app.address})
    await s.core.channel.close()
    await s.core.app.shutdown(grace=0.2)
    return CoreApp(settings)


async def start_again(s: Stack, app: CoreApp) -> Core:
    """Start ``app`` as the stack's core again."""
    await app.start()
    s.core = Core(app, grpc.aio.insecure_channel(app.address))
    return s.core
