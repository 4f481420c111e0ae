"""Fixtures: a real core (grpc.aio on a loopback port, SQLite in tmp_path) and the real facade served by
uvicorn on a loopback socket, both in the test's event loop; clients talk HTTP to the facade.

(httpx's ASGITransport buffers whole bodies, so SSE is tested over a real socket.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from ashao_cli.devnet import free_port
from facade.app import create_app
from facade.config import FacadeSettings
from facade.main import uvicorn_config
from tests.core.conftest import Core, core_settings, start_core, stop_core


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


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(tmp_path)
    try:
        yield s
    finally:
        await stop_stack(s)


async def read_sse(
    http: httpx.AsyncClient,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json: Any = None,
    until: tuple[str, ...] = ("done", "error"),
) -> tuple[int, list[dict[str, Any]]]:
    """(status, events) of an SSE response: each event as {"id", "event", "data", "comment"} fields
    (data JSON-decoded), until an event whose type (``event:`` or data ``type``) is in ``until``."""
    events: list[dict[str, Any]] = []
    async with http.stream(method, path, headers=headers, json=json) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, [orjson.loads(r.content)]
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if line == "":
                if current:
                    events.append(current)
                    kind = current.get("event") or (current.get("data") or {}).get("type")
                    current = {}
                    if kind in until:
                        break
                continue
            if line.startswith(":"):
                current["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(": ")
            current[name] = orjson.loads(value) if name == "data" else value
    return 200, events
