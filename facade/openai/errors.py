"""The OpenAI-compatible surface's one error mapping: core status → OpenAI's error body and status.

Every failure is ``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI gives it,
so an OpenAI SDK raises its own exception for it (401 ``AuthenticationError``, 404 ``NotFoundError``,
400 ``BadRequestError``, 429 ``RateLimitError`` after honouring ``Retry-After``, 5xx
``InternalServerError``). ``x-should-retry`` tells the SDKs when their automatic retry would be wrong
(the credits ran out, or the answer is still being produced) and when it is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from facade.http import JSON, BadRequest, read_as_json
from facade.openai.auth import credential
from facade.status import CoreCallFailed, CoreError, decode, retry_after, traced
from facade.validation import problem

log = logging.getLogger("ashao.facade.openai")

PREFIX = "/v1/"
"""Where the surface lives."""

INVALID = "invalid_request_error"
SERVER = "server_error"

# gRPC status → (HTTP status, type, code); a reason below overrides it.
_BY_CODE: dict[grpc.StatusCode, tuple[int, str, str | None]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, INVALID, "invalid_value"),
    grpc.StatusCode.OUT_OF_RANGE: (400, INVALID, "invalid_value"),
    grpc.StatusCode.UNAUTHENTICATED: (401, INVALID, "invalid_api_key"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error", "forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, INVALID, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, INVALID, "conflict"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, INVALID, "conflict"),
    grpc.StatusCode.ABORTED: (409, INVALID, "conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded"),
    grpc.StatusCode.UNIMPLEMENTED: (501, SERVER, "not_implemented"),
    grpc.StatusCode.UNAVAILABLE: (503, SERVER, "service_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, SERVER, "service_unavailable"),
}
_BY_REASON: dict[str, tuple[int, str, str | None]] = {
    "PAYMENT_REQUIRED": (402, "insufficient_quota", "insufficient_credits"),
    "MODEL_NOT_FOUND": (404, INVALID, "model_not_found"),
    "REFUSED": (400, INVALID, "content_policy_violation"),
}
_NO_RETRY = {402, 409}
"""Statuses an SDK would retry (409) or that no retry mends (402): said so with ``x-should-retry``."""


class ErrorDetail(BaseModel):
    """What went wrong, as OpenAI says it."""

    message: str = Field(description="What went wrong; for bad input it starts with the parameter.")
    type: str = Field(
        description="`invalid_request_error`, `insufficient_quota`, `rate_limit_error`, `permission_error`"
        " or `server_error`."
    )
    param: str | None = Field(description="The request parameter at fault, if one is.")
    code: str | None = Field(
        description="A stable code: `model_not_found`, `invalid_api_key`, `insufficient_credits`,"
        " `rate_limit_exceeded`, …"
    )


class OpenAIErrorBody(BaseModel):
    """Every failure of the OpenAI-compatible API."""

    error: ErrorDetail


_MEANING = {
    400: "Bad input: `param` names the parameter.",
    401: "A bad API key, or a priced model asked for without one.",
    402: "The credits do not cover it (`insufficient_credits`); no retry mends that.",
    404: "No such model (`model_not_found`).",
    409: "The `Idempotency-Key` was already used for another request.",
    413: "The body is larger than the limit (1 MiB by default).",
    429: "Too many requests; `Retry-After` says when to try again.",
    503: "The coordinator is unreachable, or the answer failed (no worker took it in time, or every worker"
    " that tried failed: refunded, and `code` says why); an `Idempotency-Key` makes a retry safe.",
    504: "The answer did not finish in time; it is still being produced (the message names the job).",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the failures a route can answer (503 always)."""
    return {
        status: {"model": OpenAIErrorBody, "description": _MEANING[status]}
        for status in sorted({*statuses, 503})
    }


def error(
    status: int,
    message: str,
    *,
    type_: str = INVALID,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One error response."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSON(body, status_code=status, headers=headers)


def error_response(err: CoreError, *, anonymous: bool = False) -> Response:
    """The response of a core error (``anonymous``: the caller sent no credential)."""
    if err.unreachable:
        return error(
            503,
            "the coordinator is unreachable; try again shortly",
            type_=SERVER,
            code="service_unavailable",
        )
    status, kind, code = _BY_REASON.get(err.reason) or _BY_CODE.get(err.code, (500, SERVER, "internal_error"))
    if status == 401 and anonymous:
        code = "missing_api_key"
    headers = retry_after(err) or {}
    if status in _NO_RETRY:
        headers["x-should-retry"] = "false"
    return error(status, err.message, type_=kind, param=err.field or None, code=code, headers=headers)


def bad_input(field: str, message: str) -> Response:
    """400 naming ``field``."""
    code = "missing_required_parameter" if message.endswith(": required") else "invalid_value"
    return error(400, message, param=field, code=code)


def unexpected(exc: BaseException) -> Response:
    """A failure nobody planned for: logged with a trace id, answered in the documented shape."""
    return error(500, f"internal error (trace id {traced(log, exc)})", type_=SERVER, code="internal_error")


def _anonymous(request: Request) -> bool:
    return not credential(request, request.app.state.core.settings)


async def guarded(call: Awaitable[Response], request: Request) -> Response:
    """``call``'s response, or the surface's error body for what it raised."""
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        return error_response(decode(err), anonymous=_anonymous(request))
    except CoreCallFailed as failed:
        return error_response(failed.error, anonymous=_anonymous(request))
    except BadRequest as err:
        return bad_input(err.field or "body", err.message)
    except RequestValidationError as err:
        return bad_input(*problem(err.errors()))
    except HTTPException as err:  # raised by FastAPI itself only when a body cannot be read as JSON
        return error(err.status_code, f"body: {str(err.detail).lower()}", param="body", code="invalid_json")
    except ClientDisconnect:  # the client left while sending its body: no one to answer
        return Response(status_code=400)
    except Exception as exc:
        return unexpected(exc)


class OpenAIRoute(APIRoute):
    """A route of the OpenAI-compatible API: its body is read as JSON whatever its Content-Type says,
    and core errors and bad input become OpenAI's error bodies."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The handler, wrapped in the surface's error mapping."""
        handler = super().get_route_handler()
        has_body = self.body_field is not None

        async def mapped(request: Request) -> Response:
            if has_body:
                read_as_json(request)
            return await guarded(handler(request), request)

        return mapped
