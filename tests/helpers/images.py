"""Image bytes and image servers for tests."""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers.serve import serving


def png(width: int = 2, height: int = 1) -> bytes:
    """A valid, tiny RGB PNG."""
    return encode_png(width, height, b"\x80\x20\xc0" * (width * height))


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """An RGB PNG of ``rgb``: ``height`` rows of ``width`` pixels, three bytes each."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = 3 * width
    raw = b"".join(b"\x00" + rgb[y * row : (y + 1) * row] for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True, slots=True)
class Png:
    """A PNG read back (8-bit RGB, no interlace, every scanline unfiltered, as the images ashao draws)."""

    width: int
    height: int
    texts: dict[str, str]
    """Its iTXt chunks."""
    rows: list[bytes]
    """RGB bytes of each row."""


def read_png(data: bytes) -> Png:
    """Parse ``data`` chunk by chunk, checking every CRC; AssertionError if it is not such a PNG."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:8]
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    texts = {}
    for kind, body in chunks:
        if kind == b"iTXt":
            key, rest = body.split(b"\x00", 1)
            texts[key.decode("latin-1")] = rest[4:].decode()
    return Png(width, height, texts, [row[1:] for row in rows])


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
        async with serving(app) as self.port:
            yield self
