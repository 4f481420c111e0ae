"""The image backends against image servers the tests start on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.core.test_images import png
from worker_agent.backends.images import A1111Backend, ImageBackendError, OpenAIImagesBackend

pytestmark = pytest.mark.timeout(30)


class ImageServer:
    """Serves both APIs; ``mode`` "ok", "fail" or "garbage"."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.port = 0

    async def _handle(self, request: Request) -> JSONResponse:
        body = orjson.loads(await request.body())
        self.requests.append((request.url.path, body))
        if self.mode == "fail":
            return JSONResponse({"error": "busy"}, status_code=503)
        data = png() if self.mode == "ok" else b"GIF89a not really"
        b64 = base64.b64encode(data).decode()
        if request.url.path.endswith("txt2img"):
            return JSONResponse({"images": [b64], "parameters": body})
        return JSONResponse({"created": 0, "data": [{"b64_json": b64}]})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ImageServer]:
        app = Starlette(
            routes=[
                Route("/v1/images/generations", self._handle, methods=["POST"]),
                Route("/sdapi/v1/txt2img", self._handle, methods=["POST"]),
            ]
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            for _ in range(500):
                if server.started:
                    break
                await asyncio.sleep(0.01)
            yield self
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            sock.close()


async def test_openai_images_backend() -> None:
    async with ImageServer().running() as srv:
        for suffix in ("", "/v1"):
            b = OpenAIImagesBackend(upstream=f"http://127.0.0.1:{srv.port}{suffix}", model="sdxl")
            data, mime = await b.generate(
                prompt="aurora", style="Cinematic", width=1344, height=768, nsfw=False
            )
            await b.aclose()
            assert data == png() and mime == "image/png"
        path, body = srv.requests[-1]
        assert path == "/v1/images/generations"
        assert (
            body["size"] == "1344x768"
            and body["response_format"] == "b64_json"
            and "aurora" in body["prompt"]
        )


async def test_a1111_backend() -> None:
    async with ImageServer().running() as srv:
        b = A1111Backend(upstream=f"http://127.0.0.1:{srv.port}")
        data, mime = await b.generate(prompt="aurora", style="Anime", width=768, height=1344, nsfw=False)
        await b.aclose()
        assert data == png() and mime == "image/png"
        path, body = srv.requests[-1]
        assert path == "/sdapi/v1/txt2img" and (body["width"], body["height"]) == (768, 1344)
        assert "nsfw" in body["negative_prompt"] and "anime" in body["prompt"]


@pytest.mark.parametrize("mode", ["fail", "garbage"])
async def test_image_backend_errors(mode: str) -> None:
    async with ImageServer(mode).running() as srv:
        for b in (
            OpenAIImagesBackend(upstream=f"http://127.0.0.1:{srv.port}", model="m"),
            A1111Backend(upstream=f"http://127.0.0.1:{srv.port}"),
        ):
            with pytest.raises(ImageBackendError) as info:
                await b.generate(prompt="x", style="Anime", width=8, height=8, nsfw=True)
            await b.aclose()
            assert info.value.retryable is (mode == "fail")
