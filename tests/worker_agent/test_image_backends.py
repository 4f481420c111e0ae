"""The image backends against image servers the tests start on loopback."""

from __future__ import annotations

import pytest

from tests.helpers.images import ImageServer, png
from worker_agent.backends.images import A1111Backend, ImageBackendError, OpenAIImagesBackend

pytestmark = pytest.mark.timeout(30)


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
