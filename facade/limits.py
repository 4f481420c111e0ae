"""The request body limit, enforced beneath every route by a pure ASGI middleware.

A body past the limit is refused with 413 before any route sees it, so one client's oversized
request costs that client alone: it is never read whole into memory, never parsed, and never travels
on the facade's shared streams to the core. A declared ``Content-Length`` over the limit is refused
before a byte of the body is read; a chunked body is counted as it arrives and refused as soon as it
passes the limit. What is left of a refused body is read and dropped by the server for a bounded
time (``facade.connections``), so a client still sending it can read the 413.

A request without a body (``GET /api/chat/stream`` and every other read) passes straight through:
the middleware looks at its headers and hands on the original ``receive``.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


def too_large_body(path: str, limit: int) -> bytes:
    """The 413 body in the shape of the surface ``path`` belongs to."""
    if path.startswith("/api/"):
        return orjson.dumps({"error": f"body: too large (the limit is {limit} bytes)"})
    if path.startswith("/v1/"):
        return orjson.dumps(
            {
                "error": {
                    "message": f"body: too large (the limit is {limit} bytes)",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "request_too_large",
                }
            }
        )
    return orjson.dumps(
        {
            "error": "payload_too_large",
            "detail": f"the request body is larger than the limit of {limit} bytes",
            "limit_bytes": limit,
        }
    )


def body_framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """``(declared Content-Length or None, chunked)`` of a request's raw ASGI headers."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None  # the HTTP parser refuses such a request before it gets here
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked


class BodyLimit:
    """Pure ASGI middleware: request bodies larger than ``max_bytes`` are answered 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body; hand everything else on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, chunked = body_framing(scope["headers"])
        if not chunked:
            if length is not None and length > self.max_bytes:
                await self._refuse(scope, send)
                return
            # No body, or one the HTTP parser holds to its declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left while sending: there is no one to answer
            body: bytes = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            if body:
                chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = too_large_body(scope["path"], self.max_bytes)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first gives the whole counted ``body``, then whatever ``receive`` says (the
    client leaving)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
