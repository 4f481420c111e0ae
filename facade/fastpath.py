"""The hot routes served beneath FastAPI's per-request layers.

A busy facade answers thousands of sends and writes tens of thousands of SSE events a second; the
router's matching, dependency resolution and exception wrappers cost more per request (and, for a
stream, per write) than the work itself. ``FastPaths`` is one pure ASGI middleware that hands a few
(method, path) pairs straight to their serving function, found with one lookup; every other request
goes on to the app. Each route is still declared on the router, so ``/docs`` documents it and the
router serves it too where a serving function hands a request on (a body that does not validate).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

Serve = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]
"""Serves one request; the last argument is the app, for a request it hands on."""


class FastPaths:
    """Serves the requests of ``routes`` ((method, path) → function); passes on everything else."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Serve]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a fast route; hand everything else on."""
        if scope["type"] == "http":
            serve = self.routes.get((scope["method"], scope["path"]))
            if serve is not None:
                await serve(scope, receive, send, self.app)
                return
        await self.app(scope, receive, send)
