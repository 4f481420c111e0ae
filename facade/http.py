"""HTTP plumbing shared by both surfaces: JSON bodies in and out, who the caller is, call metadata.

Request bodies are parsed with orjson and checked for shape here (a field of the wrong JSON type is
a 400 naming it); every rule about values (which tiers exist, how long content may be) is the core's.
"""

from __future__ import annotations

from typing import Any

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


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is ``{}``); BadRequest otherwise."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body: malformed JSON ({exc})", field="body") from None
    if not isinstance(doc, dict):
        raise BadRequest("body: must be a JSON object", field="body")
    return doc


def string(doc: dict[str, Any], name: str, *, required: bool = False) -> str:
    """The string field ``name`` ('' when absent and not required)."""
    value = doc.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: required", field=name)
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string", field=name)
    return value


def integer(doc: dict[str, Any], name: str, *, required: bool = False, default: int = 0) -> int:
    """The integer field ``name``."""
    value = doc.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: required", field=name)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name}: must be an integer", field=name)
    return value


def number(doc: dict[str, Any], name: str, *, default: float = 0.0) -> float:
    """The numeric field ``name``."""
    value = doc.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name}: must be a number", field=name)
    return float(value)


def boolean(doc: dict[str, Any], name: str, *, default: bool = False) -> bool:
    """The boolean field ``name``."""
    value = doc.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{name}: must be true or false", field=name)
    return value


def strings(doc: dict[str, Any], name: str) -> list[str]:
    """The list-of-strings field ``name`` (empty when absent)."""
    value = doc.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name}: must be a list of strings", field=name)
    return value


def bearer(request: Request) -> str:
    """The bearer token of the Authorization header, or ''."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def credential(request: Request, settings: FacadeSettings) -> str:
    """The end user's credential: a bearer API key (or token), else the session cookie."""
    return bearer(request) or request.cookies.get(settings.session_cookie, "")


def client_ip(request: Request, settings: FacadeSettings) -> str:
    """The caller's IP: the first X-Forwarded-For hop behind a trusted proxy, else the peer."""
    if settings.trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
    return request.client.host if request.client else ""


def is_https(request: Request, settings: FacadeSettings) -> bool:
    """Whether the caller reached us over HTTPS (directly, or through a trusted proxy)."""
    if settings.trust_forwarded and request.headers.get("x-forwarded-proto", "").lower() == "https":
        return True
    return request.url.scheme == "https"


def call_metadata(request: Request, settings: FacadeSettings, token: str | None = None) -> Metadata:
    """gRPC metadata naming the end user to the core: their credential and their IP."""
    secret = credential(request, settings) if token is None else token
    ip = client_ip(request, settings)
    if secret:
        return (("authorization", f"Bearer {secret}"), ("x-ashao-client-ip", ip))
    return (("x-ashao-client-ip", ip),)
