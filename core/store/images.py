"""Content-addressed storage of image files (next to the database, under the data directory)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MIME_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
MAX_IMAGE_BYTES = 16 * 1024 * 1024


def sniff(data: bytes) -> str:
    """The media type the bytes really have (PNG, JPEG or WebP), or ''."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


class ImageFiles:
    """Files named by the SHA-256 of their bytes, under ``<data_dir>/images``."""

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
