"""The network API's one error mapping: core status → ``{"error": string}`` with its HTTP status.

Every route of the surface uses ``NetworkRoute``, which applies the mapping to whatever its handler
raises, so no request gets an opaque 500: an unexpected failure is logged with a trace id and
answered in the same shape.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from facade.http import JSON, BadRequest
from facade.status import CoreCallFailed, CoreError, decode

log = logging.getLogger("ashao.facade.network")

_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_BY_REASON = {"PAYMENT_REQUIRED": 402, "REFUSED": 451}


def status_of(err: CoreError) -> int:
    """The HTTP status of a core error on this surface."""
    return _BY_REASON.get(err.reason) or _BY_CODE.get(err.code, 500)


def error_response(err: CoreError) -> Response:
    """``{"error": …}`` with the status the error table gives."""
    if err.unreachable:
        return JSON({"error": "the coordinator is unreachable; try again shortly"}, status_code=503)
    headers = {"Retry-After": str(max(1, round(err.retry_after_s)))} if err.retry_after_s > 0 else None
    return JSON({"error": err.message}, status_code=status_of(err), headers=headers)


def unexpected(exc: BaseException) -> Response:
    """A failure nobody planned for: logged with a trace id, answered in the documented shape."""
    trace_id = uuid.uuid4().hex[:16]
    log.error("unexpected error, trace id %s", trace_id, exc_info=exc)
    return JSON({"error": f"internal error (trace id {trace_id})"}, status_code=500)


async def guarded(call: Awaitable[Response]) -> Response:
    """``call``'s response, or the surface's error body for what it raised."""
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        return error_response(decode(err))
    except CoreCallFailed as failed:
        return error_response(failed.error)
    except BadRequest as err:
        return JSON({"error": err.message}, status_code=400)
    except Exception as exc:
        return unexpected(exc)


class NetworkRoute(APIRoute):
    """A route of the network API: core errors and bad input become ``{"error"}`` bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, wrapped in the surface's error mapping."""
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            return await guarded(handler(request))

        return mapped
