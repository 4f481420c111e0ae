"""What a failed core call says, decoded once from its gRPC status and ``google.rpc`` details.

The core puts a ``google.rpc.ErrorInfo`` (its stable ``reason``, the bad ``field``, and for the relay
surface the exact ``envelope`` body with its ``signature`` and ``key_id``) and, when the caller should
wait, a ``google.rpc.RetryInfo`` into the ``grpc-status-details-bin`` trailer. The facade never parses
message text.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"


class CallErrorLike(Protocol):
    """The fields of ``ashao.v1.CallError``."""

    code: str
    message: str
    reason: str
    field: str
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class CoreError:
    """A core call's failure, ready to be mapped onto a surface's documented body."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    field: str = ""
    envelope: bytes | None = None
    signature: str = ""
    key_id: str = ""
    retry_after_s: float = 0.0

    @property
    def unreachable(self) -> bool:
        """The core could not be reached at all (no details: the channel failed, not the core)."""
        return (
            self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not self.reason
        )


def decode(err: grpc.aio.AioRpcError) -> CoreError:
    """The CoreError behind ``err``."""
    raw = None
    for key, value in err.trailing_metadata() or ():
        if key == DETAILS_KEY:
            raw = value
            break
    code, message = err.code(), err.details() or err.code().name
    if not isinstance(raw, bytes):
        return CoreError(code, message)
    status = status_pb2.Status.FromString(raw)
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    reason, field, envelope, signature, key_id, retry_after = "", "", None, "", "", 0.0
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
            reason = info.reason
            field = info.metadata.get("field", "")
            if "envelope" in info.metadata:
                envelope = info.metadata["envelope"].encode()
            signature = info.metadata.get("signature", "")
            key_id = info.metadata.get("key_id", "")
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            detail.Unpack(retry)
            retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return CoreError(code, status.message or message, reason, field, envelope, signature, key_id, retry_after)


class CoreCallFailed(Exception):
    """A call relayed over a multiplexed stream was refused (as an AioRpcError would say)."""

    def __init__(self, error: CoreError) -> None:
        super().__init__(error.message)
        self.error = error


def from_call_error(e: CallErrorLike) -> CoreError:
    """The CoreError of a refusal that came in-band (``ashao.v1.CallError``)."""
    try:
        code = grpc.StatusCode[e.code]
    except KeyError:
        code = grpc.StatusCode.UNKNOWN
    return CoreError(code, e.message, e.reason, e.field, retry_after_s=e.retry_after_s)


def retry_after(err: CoreError) -> dict[str, str] | None:
    """The ``Retry-After`` header (whole seconds, at least 1) of an error that says when to retry."""
    return {"Retry-After": str(max(1, round(err.retry_after_s)))} if err.retry_after_s > 0 else None


def traced(log: logging.Logger, exc: BaseException) -> str:
    """Log a failure nobody planned for under a new trace id; returns the id (said to the caller)."""
    trace_id = uuid.uuid4().hex[:16]
    log.error("unexpected error, trace id %s", trace_id, exc_info=exc)
    return trace_id
