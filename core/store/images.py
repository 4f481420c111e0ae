"""Content-addressed storage of pictures: files under the data directory (one core), or rows of the
store every core shares (several cores: any of them serves a picture another one received)."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import zlib
from pathlib import Path
from typing import Protocol

from core.store.base import Store

MIME_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
MAX_IMAGE_BYTES = 16 * 1024 * 1024


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sniff(data: bytes) -> str:
    """The media type the bytes really are — a whole PNG, JPEG or WebP file by its structure, not only
    its first bytes — or ''. (A file served as an image must be one: anything else after a valid
    signature could be a page a browser might render.)"""
    if data.startswith(PNG_SIGNATURE):
        return "image/png" if _whole_png(data) else ""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg" if len(data) >= 128 and data.endswith(b"\xff\xd9") else ""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = struct.unpack_from("<I", data, 4)[0] if len(data) >= 8 else 0
        ok = size + 8 == len(data) and data[12:16] in (b"VP8 ", b"VP8L", b"VP8X")
        return "image/webp" if ok else ""
    return ""


def _whole_png(data: bytes) -> bool:
    """Chunks from the signature to IEND, each with its CRC, IHDR first, at least one IDAT, nothing after."""
    pos, seen = len(PNG_SIGNATURE), []
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return False
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[pos + 4 : end]) != crc:
            return False
        seen.append(kind)
        pos = end + 4
        if kind == b"IEND":
            break
    return bool(seen) and seen[0] == b"IHDR" and seen[-1] == b"IEND" and b"IDAT" in seen and pos == len(data)


class ImageBytes(Protocol):
    """Where pictures' bytes are kept, by the SHA-256 of their bytes."""

    async def save(self, data: bytes, mime_type: str) -> str:
        """Keep ``data`` (idempotent) and return its hash once it is durable."""
        ...

    async def load(self, sha256: str, mime_type: str) -> bytes:
        """The bytes with this hash; KeyError if there are none."""
        ...


class ImageRows:
    """Pictures as rows of the shared store (several cores)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def save(self, data: bytes, mime_type: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        await self._store.write(
            [
                (
                    "INSERT INTO image_blobs (sha256, mime_type, data) VALUES (?,?,?)"
                    " ON CONFLICT (sha256) DO NOTHING",
                    (digest, mime_type, data),
                )
            ]
        )
        return digest

    async def load(self, sha256: str, mime_type: str) -> bytes:
        row = await self._store.fetchone("SELECT data FROM image_blobs WHERE sha256 = ?", (sha256,))
        if row is None:
            raise KeyError(sha256)
        return bytes(row[0])


class ImageFiles:
    """Files named by the SHA-256 of their bytes, under ``<data_dir>/images`` (one core)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str, mime_type: str) -> Path:
        """Where bytes with this hash live."""
        return self.root / sha256[:2] / (sha256 + MIME_TYPES.get(mime_type, ".bin"))

    def put(self, data: bytes, mime_type: str) -> str:
        """Store ``data`` (idempotent); returns its hash. Runs in a thread."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path(digest, mime_type)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return digest

    async def save(self, data: bytes, mime_type: str) -> str:
        """``put`` in a thread."""
        return await asyncio.to_thread(self.put, data, mime_type)

    async def load(self, sha256: str, mime_type: str) -> bytes:
        """The file's bytes (KeyError if it is missing)."""
        try:
            return await asyncio.to_thread(self.path(sha256, mime_type).read_bytes)
        except FileNotFoundError as exc:
            raise KeyError(sha256) from exc
