"""The error table applied to every RPC: domain errors become gRPC status with ``google.rpc`` details.

Every error travels as a gRPC status code with a ``google.rpc.ErrorInfo`` detail (domain ``ashao``,
``reason`` the stable name of the error class, ``metadata`` with ``field`` for bad input and, for the
relay surface, the exact ``envelope`` body with its signature) and, when the caller should wait, a
``google.rpc.RetryInfo``. Clients (the facade first) decode those details; they never parse text.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import orjson
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from core.errors import AshaoError, InvalidArgumentError, as_domain_error

ERROR_DOMAIN = "ashao"

Signer = Callable[[bytes], tuple[str, str]]
"""Signs body bytes: returns (signature, key id)."""


def status_details(err: AshaoError, signer: Signer | None = None) -> bytes:
    """Serialise ``err`` as a ``google.rpc.Status`` for the ``grpc-status-details-bin`` trailer."""
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN)
    if err.field:
        info.metadata["field"] = err.field
    if err.envelope is not None:
        body = orjson.dumps(err.envelope)
        info.metadata["envelope"] = body.decode()
        if signer is not None:
            info.metadata["signature"], info.metadata["key_id"] = signer(body)
    details = [any_pb2.Any()]
    details[0].Pack(info)
    if err.retry_after_s > 0:
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(err.retry_after_s), nanos=int((err.retry_after_s % 1) * 1e9)
            )
        )
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    data: bytes = status.SerializeToString()
    return data


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], err: AshaoError, signer: Signer | None = None
) -> None:
    """End the call with ``err``'s status and details."""
    context.set_trailing_metadata((("grpc-status-details-bin", status_details(err, signer)),))
    await context.abort(err.code, err.message)


_Handler = Callable[..., Any]
Failed = Callable[[str], None]
"""Counts a refusal of the call by its status code name."""


class Malformed:
    """What a request that does not decode becomes: handlers refuse it as INVALID_ARGUMENT (rather than
    grpc answering UNKNOWN with an internal class name)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return Malformed(str(exc))

    return decode


def _refuse_malformed(request: Any) -> None:
    if isinstance(request, Malformed):
        raise InvalidArgumentError(f"request: not a valid message ({request.reason})", field="request")


class ErrorCounts:
    """Refused calls by method and gRPC status code name, counted where the status is decided (the
    interceptor, and the in-band refusals of streams that carry many calls); read by /metrics."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def add(self, method: str, code: str) -> None:
        """One call to ``method`` ended with status ``code``."""
        key = (method, code)
        self.counts[key] = self.counts.get(key, 0) + 1


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Applies the mapping table to every RPC: domain errors become their status with details."""

    def __init__(self, signer: Signer | None = None, errors: ErrorCounts | None = None) -> None:
        self._signer = signer
        self._errors = errors if errors is not None else ErrorCounts()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        failed = functools.partial(self._errors.add, handler_call_details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, self._signer, failed),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, self._signer, failed),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, self._signer, failed),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, self._signer, failed),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler


async def _refuse(
    context: grpc.aio.ServicerContext[Any, Any], err: AshaoError, signer: Signer | None, failed: Failed
) -> None:
    failed(err.code.name)
    await abort_with(context, err, signer)


def _wrap_unary(behaviour: _Handler, signer: Signer | None, failed: Failed) -> _Handler:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            _refuse_malformed(request)
            return await behaviour(request, context)
        except AshaoError as err:
            await _refuse(context, err, signer, failed)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await _refuse(context, as_domain_error(exc), signer, failed)

    return wrapper


def _wrap_stream(behaviour: _Handler, signer: Signer | None, failed: Failed) -> _Handler:
    if not inspect.isasyncgenfunction(behaviour):
        # A handler using the read()/write() API is a plain coroutine.
        return _wrap_unary(behaviour, signer, failed)

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            _refuse_malformed(request)
            async for response in behaviour(request, context):
                yield response
        except AshaoError as err:
            await _refuse(context, err, signer, failed)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            await _refuse(context, as_domain_error(exc), signer, failed)

    return wrapper
