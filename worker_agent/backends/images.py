"""Image backends: an OpenAI-compatible ``/v1/images/generations`` server, or an AUTOMATIC1111-style
``/sdapi/v1/txt2img`` server. Each returns the encoded picture and its media type."""

from __future__ import annotations

import base64
import binascii
from typing import Protocol

import httpx

from worker_agent.backends import BackendError

NEGATIVE_SFW = "nsfw, nudity, explicit"


class ImageBackendError(BackendError):
    """The image server could not produce a picture."""


class ImageBackend(Protocol):
    """Draws one picture."""

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        """(encoded image, media type)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def media_type(data: bytes) -> str:
    """PNG, JPEG or WebP by their magic bytes; ImageBackendError otherwise."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ImageBackendError("the server returned something that is not a PNG, JPEG or WebP", retryable=False)


def _decode(b64: object) -> bytes:
    if not isinstance(b64, str):
        raise ImageBackendError("the server returned no image data")
    if b64.startswith("data:"):
        b64 = b64.split(",", 1)[-1]
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageBackendError("the server returned malformed base64") from exc


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenAIImagesBackend:
    """``POST /v1/images/generations`` with ``response_format: b64_json``."""

    def __init__(
        self,
        *,
        upstream: str,
        model: str,
        api_key: str = "",
        timeout_s: float = 180.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = _base(upstream) + "/v1/images/generations"
        self._model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0))

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        """One picture."""
        body = {
            "model": self._model,
            "prompt": f"{prompt}. Style: {style}.",
            "n": 1,
            "size": f"{width}x{height}",
            "response_format": "b64_json",
        }
        try:
            r = await self._client.post(self._url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ImageBackendError(f"image server unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise ImageBackendError(f"image server answered {r.status_code}", retryable=r.status_code >= 500)
        try:
            data = _decode(r.json()["data"][0]["b64_json"])
        except (KeyError, IndexError, ValueError) as exc:
            raise ImageBackendError("unexpected answer from the image server") from exc
        return data, media_type(data)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


class A1111Backend:
    """``POST /sdapi/v1/txt2img`` (AUTOMATIC1111 / Forge / SD.Next)."""

    def __init__(
        self,
        *,
        upstream: str,
        steps: int = 25,
        timeout_s: float = 300.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = _base(upstream) + "/sdapi/v1/txt2img"
        self._steps = steps
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0))

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        """One picture."""
        body = {
            "prompt": f"{prompt}, {style.lower()} style",
            "negative_prompt": "" if nsfw else NEGATIVE_SFW,
            "width": width,
            "height": height,
            "steps": self._steps,
            "batch_size": 1,
            "n_iter": 1,
        }
        try:
            r = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise ImageBackendError(f"image server unreachable: {type(exc).__name__}") from exc
        if r.status_code != 200:
            raise ImageBackendError(f"image server answered {r.status_code}", retryable=r.status_code >= 500)
        try:
            data = _decode(r.json()["images"][0])
        except (KeyError, IndexError, ValueError) as exc:
            raise ImageBackendError("unexpected answer from the image server") from exc
        return data, media_type(data)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
