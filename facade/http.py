"""HTTP plumbing shared by both surfaces: JSON out, who the caller is, call metadata.

Request bodies are checked by the models the routes declare (see ``facade.validation``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
from fastapi import Request
from starlette.responses import Response

from facade.config import FacadeSettings

Metadata = tuple[tuple[str, str], ...]


class BadRequest(Exception):
    """The request is malformed before it reaches the core; ``message`` names the field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class JSON(Response):
    """A JSON response serialised once with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body bytes."""
        return orjson.dumps(content)


def metadata_safe(value: str) -> str:
    """``value`` as gRPC metadata can carry it (printable ASCII). HTTP headers may hold any Latin-1
    byte; such a value is percent-encoded, so a credential that cannot be valid stays one that is not
    (the core answers it as any other bad credential) instead of failing the call."""
    if value.isascii() and value.isprintable():
        return value
    return quote(value, safe="")


def bearer(request: Request) -> str:
    """The bearer token of the Authorization header, or ''."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return metadata_safe(token.strip()) if scheme.lower() == "bearer" else ""


def credential(request: Request, settings: FacadeSettings) -> str:
    """The end user's credential: a bearer API key (or token), else the session cookie."""
    return bearer(request) or metadata_safe(request.cookies.get(settings.session_cookie, ""))


MAX_IDEMPOTENCY_KEY = 128
"""Longest Idempotency-Key header accepted (the core keeps keys 24 hours per caller)."""


def idempotency_key(request: Request) -> str:
    """The ``Idempotency-Key`` header of a send ('' without one); BadRequest if it cannot be one."""
    key = request.headers.get("idempotency-key", "")
    if len(key) > MAX_IDEMPOTENCY_KEY or not (key.isascii() and key.isprintable()):
        raise BadRequest(
            f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def client_ip(request: Request) -> str:
    """The caller's IP: the peer's, or behind a trusted proxy (``trust_forwarded``, the proxy's
    address in ``forwarded_allow_ips``) the address that proxy saw: uvicorn takes it from the right of
    X-Forwarded-For, past the trusted hops, so nothing a client writes there itself is believed."""
    return metadata_safe(request.client.host) if request.client else ""


def is_https(request: Request) -> bool:
    """Whether the caller reached us over HTTPS (directly, or through a trusted proxy's
    X-Forwarded-Proto, which uvicorn applies only then)."""
    return request.url.scheme == "https"


def relay_metadata(settings: FacadeSettings) -> Metadata:
    """The metadata that makes a call the facade's own, as a trusted relay (empty without a key)."""
    return (("x-ashao-relay-key", settings.relay_key),) if settings.relay_key else ()


def call_metadata(request: Request, settings: FacadeSettings, token: str | None = None) -> Metadata:
    """gRPC metadata naming the end user to the core: their credential and their IP (believed by the
    core because the facade's relay key comes with them)."""
    secret = credential(request, settings) if token is None else token
    named = (("x-ashao-client-ip", client_ip(request)), *relay_metadata(settings))
    if secret:
        return (("authorization", f"Bearer {secret}"), *named)
    return named


_JSON = b"application/json"


def read_as_json(request: Request) -> None:
    """Have FastAPI read the body as JSON whatever its Content-Type says: every body of this API is
    JSON, and ``curl -d`` (or a browser's plain ``fetch``) labels it otherwise."""
    headers = request.scope["headers"]
    for name, value in headers:
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            if kind == _JSON or kind.endswith(b"+json"):
                return
    request.scope["headers"] = [(n, v) for n, v in headers if n != b"content-type"] + [
        (b"content-type", _JSON)
    ]
