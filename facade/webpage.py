"""The web page at ``/``: a single-page app over the documented network API (``facade/web/``).

Plain JavaScript modules and a stylesheet, served as they are: no build step, nothing loaded from
another origin. The Content-Security-Policy lets the page run only its own files and talk only to
this facade, so an injected string can never become a script, and the page cannot be framed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from starlette.responses import Response

from facade.assets import CONTENT_TYPES, Assets

WEB_DIR = Path(__file__).parent / "web"
"""The page's files."""
INDEX = "index.html"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Only this origin's scripts, styles, images and API; no inline script, no framing."""

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def install(app: FastAPI, directory: Path = WEB_DIR) -> None:
    """Serve ``directory``'s ``index.html`` at ``/`` and its other files at ``/web/<name>``."""
    names = sorted(p.name for p in directory.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES)
    files = Assets(directory, names, headers=HEADERS)

    async def page(request: Request) -> Response:
        return files.response(INDEX, request)

    async def web_file(name: str, request: Request) -> Response:
        if name == INDEX or name not in files:
            raise HTTPException(404)
        return files.response(name, request)

    app.add_api_route("/", page, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/web/{name}", web_file, methods=["GET", "HEAD"], include_in_schema=False)
