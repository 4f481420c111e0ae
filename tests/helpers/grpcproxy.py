"""A recording gRPC proxy: a real grpc.aio server on loopback that passes every call, of any shape,
through to an upstream server as raw bytes, and records each call's method and metadata.

Put it between the facade and the core to see exactly what the facade tells the core about who is
calling.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Recorded:
    """One call the proxy passed on."""

    method: str
    metadata: dict[str, str]


def _forwardable(metadata: Any) -> list[tuple[str, str | bytes]]:
    return [
        (k, v) for k, v in metadata or () if not k.startswith((":", "grpc-")) and k not in ("user-agent",)
    ]


class RecordingProxy(grpc.GenericRpcHandler):
    """Serves every method as a bidirectional stream of bytes (which carries unary calls as well)."""

    def __init__(self, upstream: str) -> None:
        self.calls: list[Recorded] = []
        self._channel = grpc.aio.insecure_channel(upstream)
        self._server = grpc.aio.server(handlers=[self])
        self.address = ""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        return grpc.stream_stream_rpc_method_handler(self._forward(method))

    def _forward(self, method: str) -> Any:
        async def forward(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            incoming = context.invocation_metadata()
            self.calls.append(Recorded(method, {k: v for k, v in incoming or () if isinstance(v, str)}))
            remaining = context.time_remaining()
            call = self._channel.stream_stream(method)(
                requests, metadata=_forwardable(incoming), timeout=remaining
            )
            try:
                await context.send_initial_metadata(_forwardable(await call.initial_metadata()))
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "", err.trailing_metadata() or ())
            finally:
                call.cancel()

        return forward

    async def start(self) -> None:
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._server.stop(grace=0.2)
        await self._channel.close()

    def for_method(self, suffix: str) -> list[Recorded]:
        """The recorded calls of the method ``/<service>/<suffix>``."""
        return [c for c in self.calls if c.method.endswith("/" + suffix)]


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[RecordingProxy]:
    """A started RecordingProxy in front of ``upstream``."""
    proxy = RecordingProxy(upstream)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
