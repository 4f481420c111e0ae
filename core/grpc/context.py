"""What a servicer reads from a call's context: the caller's credential and address."""

from __future__ import annotations

from typing import Any

import grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


def metadata(context: Ctx, key: str) -> str:
    """The value of metadata ``key`` ('' if absent)."""
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


def client_ip(context: Ctx) -> str:
    """The caller's address: the client IP a relay (the facade) forwards, else the gRPC peer."""
    return metadata(context, "x-ashao-client-ip") or context.peer()


def bearer(context: Ctx) -> str:
    """The bearer token of a call, or ''."""
    value = metadata(context, "authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
