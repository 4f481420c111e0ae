"""The synthetic image backend — for development only, it runs no model.

It draws a real PNG from the prompt: a gradient and a few orbs whose colours and places come from the
SHA-256 of the prompt and style, the words ``DEVELOPMENT IMAGE - NO MODEL`` across the top, and the
prompt itself as a caption, in a pixel font. The same request always gives the same bytes. The PNG's
text chunks say the same (``Software``, ``Comment``, and the prompt as ``Description``), so no one
mistakes it for a generated picture. ``ashao up``'s local workers use it, so that images work on a
development network without an image server.

Drawn at a low resolution and enlarged (pixel art), with zlib and struct only, off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import zlib

from worker_agent.backends.images import ImageBackendError
from worker_agent.backends.pixelfont import ADVANCE, HEIGHT, LINE, WIDTH, glyph, wrap

BANNER = "DEVELOPMENT IMAGE - NO MODEL"
MAX_SIDE = 4096
"""Largest width or height drawn."""
LOW_RES_PIXELS = 192 * 108
"""About how many pixels the drawing has before it is enlarged (its pixels become squares of the
picture): what bounds the work, whatever the picture's size."""
MAX_CAPTION_LINES = 6

Canvas = list[bytearray]
"""Rows of RGB bytes."""


def _colour(seed: bytes, i: int) -> tuple[int, int, int]:
    """A vivid colour from three bytes of ``seed``."""
    r, g, b = seed[i], seed[i + 1], seed[i + 2]
    lo = min(r, g, b)
    return (r - lo) // 2 + 96, (g - lo) // 2 + 64, (b - lo) // 2 + 128


def _background(w: int, h: int, seed: bytes) -> Canvas:
    a, b = _colour(seed, 0), _colour(seed, 3)
    rows = []
    for y in range(h):
        row = bytearray(w * 3)
        for x in range(w):
            t = (x / w + y / h) / 2
            row[x * 3 : x * 3 + 3] = bytes(int(a[k] + (b[k] - a[k]) * t) for k in range(3))
        rows.append(row)
    return rows


def _orbs(canvas: Canvas, seed: bytes) -> None:
    """Five soft discs, half blended into what is below them."""
    h, w = len(canvas), len(canvas[0]) // 3
    for n in range(5):
        cx, cy = seed[8 + n] * w // 256, seed[13 + n] * h // 256
        radius = 4 + seed[18 + n] * min(w, h) // 1024
        colour = _colour(seed, 23 + n)
        for y in range(max(0, cy - radius), min(h, cy + radius + 1)):
            row = canvas[y]
            for x in range(max(0, cx - radius), min(w, cx + radius + 1)):
                if (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius:
                    i = x * 3
                    row[i : i + 3] = bytes((row[i + k] + colour[k]) // 2 for k in range(3))


def _shade(canvas: Canvas, top: int, bottom: int) -> None:
    """Darken rows ``top`` to ``bottom`` (behind text)."""
    for y in range(max(0, top), min(len(canvas), bottom)):
        canvas[y] = bytearray(v // 3 for v in canvas[y])


def _text(canvas: Canvas, x0: int, y0: int, text: str, colour: tuple[int, int, int]) -> None:
    h, w = len(canvas), len(canvas[0]) // 3
    pixel = bytes(colour)
    for n, char in enumerate(text):
        rows = glyph(char)
        for dy in range(HEIGHT):
            y = y0 + dy
            if not 0 <= y < h:
                continue
            for dx in range(WIDTH):
                x = x0 + n * ADVANCE + dx
                if 0 <= x < w and rows[dy] >> (WIDTH - 1 - dx) & 1:
                    canvas[y][x * 3 : x * 3 + 3] = pixel


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(canvas: Canvas, scale: int, width: int, height: int, texts: dict[str, str]) -> bytes:
    """``canvas`` enlarged ``scale`` times and cut to ``width`` x ``height``, as an RGB PNG."""
    lines = []
    for row in canvas:
        wide = b"".join(bytes(row[i : i + 3]) * scale for i in range(0, len(row), 3))[: width * 3]
        lines.extend([b"\x00" + wide] * scale)  # filter type 0 (none) before each scanline
    raw = b"".join(lines[:height])
    meta = b"".join(
        _chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode())
        for key, value in texts.items()
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + meta
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def draw(*, prompt: str, style: str, width: int, height: int) -> bytes:
    """The development picture of ``prompt`` in ``style``, ``width`` x ``height`` pixels, as PNG bytes."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ImageBackendError(f"size: {width}x{height} is outside 1..{MAX_SIDE}", retryable=False)
    seed = hashlib.sha256(f"{style}\x00{prompt}".encode()).digest()
    scale = max(1, min(width, height, round(math.sqrt(width * height / LOW_RES_PIXELS))))
    w, h = -(-width // scale), -(-height // scale)
    canvas = _background(w, h, seed)
    _orbs(canvas, seed)
    columns = max(1, (w - 4) // ADVANCE)
    banner = wrap(BANNER, columns, 3)
    _shade(canvas, 0, len(banner) * LINE + 3)
    for n, line in enumerate(banner):
        _text(canvas, 2, 2 + n * LINE, line, (255, 214, 64))
    caption = wrap(f"{prompt} ({style})", columns, MAX_CAPTION_LINES)
    top = h - len(caption) * LINE - 3
    _shade(canvas, top, h)
    for n, line in enumerate(caption):
        _text(canvas, 2, top + 2 + n * LINE, line, (240, 240, 240))
    return _png(
        canvas,
        scale,
        width,
        height,
        {
            "Software": "ashao synthetic image backend",
            "Comment": "development output: drawn from the prompt, no model ran",
            "Description": prompt,
        },
    )


class SyntheticImageBackend:
    """Draws the development picture of each prompt (see the module)."""

    async def generate(
        self, *, prompt: str, style: str, width: int, height: int, nsfw: bool
    ) -> tuple[bytes, str]:
        """One picture (PNG); ``nsfw`` changes nothing: nothing drawn here needs it."""
        return await asyncio.to_thread(
            draw, prompt=prompt, style=style, width=width, height=height
        ), "image/png"

    async def aclose(self) -> None:
        """Nothing to release."""
