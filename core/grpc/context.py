"""What a servicer reads from a call's context: the caller's credential, its address, and whether it
is a trusted relay speaking for end users."""

from __future__ import annotations

from typing import Any, TypeVar

import grpc

from core.errors import InvalidArgumentError
from core.identity.relays import RELAY_KEY_HEADER, RelayKeys

Ctx = grpc.aio.ServicerContext[Any, Any]
PEER_HEADER = "x-ashao-peer"
"""Set ("1") with a relay key by a core that follows another core's job for its own readers."""
M = TypeVar("M")


def metadata(context: Ctx, key: str) -> str:
    """The value of metadata ``key`` ('' if absent)."""
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


def bearer(context: Ctx) -> str:
    """The bearer token of a call, or ''."""
    value = metadata(context, "authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string (``ipv4:1.2.3.4:5678`` → ``1.2.3.4``, ``ipv6:[::1]:5678`` →
    ``::1``): one key per address, whatever port each connection comes from."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return kind or peer


class Callers:
    """Reads who is calling, believing what a call says of end users only from a trusted relay."""

    def __init__(self, relays: RelayKeys) -> None:
        self._relays = relays

    def trusted(self, context: Ctx) -> bool:
        """Whether the call comes from a trusted relay."""
        return self._relays.trusted(metadata(context, RELAY_KEY_HEADER))

    def peer(self, context: Ctx) -> bool:
        """Whether the call comes from another core of the cluster (a trusted relay that says so)."""
        return metadata(context, PEER_HEADER) == "1" and self.trusted(context)

    def ip(self, context: Ctx) -> str:
        """The caller's address: the end user's that a trusted relay forwards, else the peer's."""
        if self.trusted(context):
            named = metadata(context, "x-ashao-client-ip")
            if named:
                return named
        return peer_host(context.peer())

    def named_ip(self, context: Ctx, named: str) -> str:
        """An end user's address named inside a relayed message: believed only from a trusted relay."""
        if named and self.trusted(context):
            return named
        return self.ip(context)


def expect(message: object, kind: type[M], field: str) -> M:
    """``message`` if it is a ``kind``; INVALID_ARGUMENT naming ``field`` otherwise (a message that did
    not decode reaches a stream handler as something else)."""
    if not isinstance(message, kind):
        raise InvalidArgumentError(f"{field}: not a valid {kind.__name__} message", field=field)
    return message
