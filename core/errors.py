"""Domain errors of the core: one hierarchy, and on each class the one table row that maps it to a
gRPC status and a stable ``reason`` (core/grpc/status.py applies the table to every RPC)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import grpc

log = logging.getLogger("ashao.core.errors")


class AshaoError(Exception):
    """Base class of every domain error the core raises."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        retry_after_s: float = 0.0,
        envelope: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s
        self.envelope = envelope
        """For the relay surface: the documented error envelope, sent as the exact body bytes."""


class InvalidArgumentError(AshaoError):
    """Bad input; ``field`` names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class NotFoundError(AshaoError):
    """Unknown id, or an id the caller may not see."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class ModelNotFoundError(NotFoundError):
    """No tier serves the model asked for."""

    reason = "MODEL_NOT_FOUND"


class UnauthenticatedError(AshaoError):
    """No credentials, or bad ones."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDeniedError(AshaoError):
    """Authenticated, but not allowed (e.g. a worker publishing to a job not assigned to it)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "FORBIDDEN"


class PaymentRequiredError(AshaoError):
    """Not enough credits, or the billing gate wants a commitment."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "PAYMENT_REQUIRED"


class ConflictError(AshaoError):
    """The operation does not fit the object's current state (e.g. completing a finished job)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CONFLICT"


class RateLimitedError(AshaoError):
    """Too many requests; ``retry_after_s`` says when to retry."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"


class UnavailableError(AshaoError):
    """The service cannot serve right now (shutting down, no provider)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class RefusedError(AshaoError):
    """Moderation declined the request or its answer."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "REFUSED"


class NoFloorError(UnavailableError):
    """The open-weights floor is required and unreachable."""

    reason = "NO_FLOOR"


class ProviderFailedError(UnavailableError):
    """Every provider of the cascade failed."""

    reason = "PROVIDER_ERROR"


def _internal(trace_id: str) -> AshaoError:
    return AshaoError(f"internal error (trace id {trace_id})")


def as_domain_error(exc: BaseException) -> AshaoError:
    """The domain error for ``exc``; anything unexpected becomes INTERNAL, logged with a trace id."""
    if isinstance(exc, AshaoError):
        return exc
    trace_id = uuid.uuid4().hex[:16]
    log.error("unexpected error, trace id %s", trace_id, exc_info=exc)
    return _internal(trace_id)


__all__ = [
    "AshaoError",
    "ConflictError",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "NoFloorError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "ProviderFailedError",
    "RateLimitedError",
    "RefusedError",
    "UnauthenticatedError",
    "UnavailableError",
    "as_domain_error",
]
