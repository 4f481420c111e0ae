"""The relay API's one error mapping: core status → the documented envelope, byte for byte.

The core sends the envelope's exact body and its signature in the status details; the facade only
picks the HTTP status and passes both through. Failures that never reached the core (it is
unreachable) or that the core did not plan for get an envelope of the same shape, unsigned.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from facade.status import CoreError, decode, retry_after, traced
from facade.validation import problem

log = logging.getLogger("ashao.facade.relay")

_BY_CODE = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.FAILED_PRECONDITION: 402,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.PERMISSION_DENIED: 451,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}

SIGNATURE_HEADER = "X-Ashao-Signature"
KEY_ID_HEADER = "X-Ashao-Key-Id"


def signed(body: bytes, signature: str, key_id: str, status_code: int = 200) -> Response:
    """The exact ``body`` with its signature headers."""
    headers = {SIGNATURE_HEADER: signature, KEY_ID_HEADER: key_id} if signature else {}
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def envelope_of(err: CoreError) -> tuple[int, bytes, str, str]:
    """(HTTP status, body, signature, key id) of a core error on this surface."""
    if err.envelope is not None:
        return _BY_CODE.get(err.code, 500), err.envelope, err.signature, err.key_id
    if err.unreachable or err.code == grpc.StatusCode.UNAVAILABLE:
        body = {"error": "provider_error", "detail": "the relay cannot reach its core; try again shortly"}
        return 503, orjson.dumps(body), "", ""
    status = _BY_CODE.get(err.code, 500)
    kind = "not_found" if status == 404 else "invalid_request" if status == 422 else "internal"
    return status, orjson.dumps({"error": kind, "detail": err.message}), "", ""


def error_response(err: CoreError) -> Response:
    """The envelope response of a core error (with Retry-After for 429)."""
    status, body, signature, key_id = envelope_of(err)
    response = signed(body, signature, key_id, status)
    response.headers.update(retry_after(err) or {})
    return response


def invalid(field: str, detail: str, status_code: int = 422) -> Response:
    """The 422 envelope naming ``field``, in the shape the core uses (unsigned: the facade has no key)."""
    body = {"error": "invalid_request", "field": field, "detail": detail}
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def unexpected(exc: BaseException) -> Response:
    """A failure nobody planned for, logged with a trace id, answered as an envelope."""
    body = {"error": "internal", "detail": f"internal error (trace id {traced(log, exc)})"}
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


async def mapped(handler: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
    """``handler``'s response, or the envelope of whatever it raised."""
    try:
        return await handler(request)
    except grpc.aio.AioRpcError as err:
        return error_response(decode(err))
    except RequestValidationError as err:
        return invalid(*problem(err.errors()))
    except HTTPException as err:  # raised by FastAPI itself only when a body cannot be read
        return invalid("body", f"body: {str(err.detail).lower()}", err.status_code)
    except ClientDisconnect:  # the client left while sending its body: no one to answer
        return Response(status_code=400)
    except Exception as exc:
        return unexpected(exc)


class RelayRoute(APIRoute):
    """A route of the relay API: core errors become their documented envelopes."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, wrapped in the surface's error mapping."""
        handler = super().get_route_handler()
        return functools.partial(mapped, handler)
