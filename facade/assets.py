"""Static files served from memory: the web page's and the offline API reference's.

A fixed set of files, read once when the app is built, each answered with the content type its
extension names (not the machine's MIME table, which differs between hosts and would meet a
``nosniff`` browser with the wrong one), an ETag, and ``no-cache`` so a browser revalidates them
(a 304 costs a few bytes) and never runs a stale copy after an upgrade.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""The only kinds of file served, by extension."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes and what is said about them."""

    body: bytes
    content_type: str
    etag: str


def load(path: Path) -> Asset:
    """The file at ``path``; ValueError for an extension not in ``CONTENT_TYPES``."""
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None:
        raise ValueError(f"no content type for {path.name}")
    body = path.read_bytes()
    return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class Assets:
    """The files named ``names`` in ``directory``, by name."""

    def __init__(
        self, directory: Path, names: Iterable[str], *, headers: Mapping[str, str] | None = None
    ) -> None:
        """Read every file now (a missing one is an error at start-up, not a 404 later);
        ``headers`` go on every answer (a Content-Security-Policy, say)."""
        self._files = {name: load(directory / name) for name in names}
        self._headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", **(headers or {})}

    def __contains__(self, name: str) -> bool:
        return name in self._files

    def response(self, name: str, request: Request) -> Response:
        """The file ``name`` (a KeyError if it is not one of them), or 304 when the browser's copy is
        current."""
        asset = self._files[name]
        headers = {**self._headers, "ETag": asset.etag}
        if asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)
