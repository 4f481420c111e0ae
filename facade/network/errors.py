"""The network API's one error mapping: core status → ``{"error": string}`` with its HTTP status.

Every route of the surface uses ``NetworkRoute``, which applies the mapping to whatever its handler
raises, so no request gets an opaque 500: an unexpected failure is logged with a trace id and
answered in the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from facade.http import JSON, BadRequest, read_as_json
from facade.status import CoreCallFailed, CoreError, decode, retry_after, traced
from facade.validation import problem

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


class ErrorBody(BaseModel):
    """Every failure of the network API: what went wrong; for bad input it starts with the field."""

    error: str


_MEANING = {
    400: "Bad input: the message names the field (`tier: …`).",
    401: "Not signed in, or a bad session, API key or worker token.",
    402: "The credits do not cover it.",
    403: "Not allowed (a worker call on a job not assigned to it, or no longer running).",
    404: "No such id, or not yours.",
    409: "Does not fit the current state (an Idempotency-Key already used for another message).",
    413: "The body is larger than the limit (1 MiB by default).",
    429: "Too many requests; `Retry-After` says when to try again.",
    451: "Refused by moderation.",
    503: "The coordinator is unreachable or busy; try again shortly.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the ``{error}`` failures a route can answer (503 always)."""
    return {
        status: {"model": ErrorBody, "description": _MEANING[status]} for status in sorted({*statuses, 503})
    }


def json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """As ``errors``, for a route whose success is not JSON (an event stream): its failures still are
    (the schema is the one the other routes register)."""
    schema = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        status: {"description": _MEANING[status], "content": {"application/json": {"schema": schema}}}
        for status in sorted({*statuses, 503})
    }


def status_of(err: CoreError) -> int:
    """The HTTP status of a core error on this surface."""
    return _BY_REASON.get(err.reason) or _BY_CODE.get(err.code, 500)


def error_response(err: CoreError) -> Response:
    """``{"error": …}`` with the status the error table gives."""
    if err.unreachable:
        return JSON({"error": "the coordinator is unreachable; try again shortly"}, status_code=503)
    return JSON({"error": err.message}, status_code=status_of(err), headers=retry_after(err))


def unexpected(exc: BaseException) -> Response:
    """A failure nobody planned for: logged with a trace id, answered in the documented shape."""
    return JSON({"error": f"internal error (trace id {traced(log, exc)})"}, status_code=500)


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
    except RequestValidationError as err:
        return JSON({"error": problem(err.errors())[1]}, status_code=400)
    except HTTPException as err:  # raised by FastAPI itself only when a body cannot be read as JSON
        return JSON({"error": f"body: {str(err.detail).lower()}"}, status_code=err.status_code)
    except Exception as exc:
        return unexpected(exc)


class NetworkRoute(APIRoute):
    """A route of the network API: its declared body model is enforced, and core errors and bad
    input become ``{"error"}`` bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, wrapped in the surface's error mapping."""
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def mapped(request: Request) -> Response:
            if has_body:
                read_as_json(request)
            return await guarded(handler(request))

        return mapped
