"""The facade's connection to the core: one channel, its stubs, and the multiplexed subscription."""

from __future__ import annotations

from typing import Annotated

import grpc
from fastapi import Depends, Request

from ashao.v1 import (
    account_pb2_grpc,
    chat_pb2_grpc,
    image_pb2_grpc,
    network_pb2_grpc,
    relay_pb2_grpc,
    treasury_pb2_grpc,
    worker_pb2_grpc,
)
from ashao_common.targets import grpc_target
from ashao_common.tracing import Tracer
from facade.config import FacadeSettings
from facade.frames import Coalescer
from facade.http import relay_metadata
from facade.mux import Mux
from facade.overhead import Overhead
from facade.primed import Primer
from facade.sends import Sender
from facade.sse import SendWatchdog

# The core refuses pings more often than every 10 s; reconnect quickly after a core restart.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
]


class CoreClient:
    """Stubs for every core service, on one channel, plus the Subscribe multiplexer."""

    def __init__(self, settings: FacadeSettings, *, tracer: Tracer | None = None) -> None:
        """``tracer`` (tracing on): sends carry their trace context to the core."""
        self.settings = settings
        settings.relay_key = settings.core_relay_key()  # read once (a file, maybe)
        relayed = relay_metadata(settings)
        target, extra = grpc_target(settings.grpc_addr)  # several cores: it fails over to the next
        options = [*CHANNEL_OPTIONS, *extra]
        if settings.core_tls or settings.core_tls_ca_file is not None:
            ca = settings.core_tls_ca_file
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes() if ca else None)
            self.channel = grpc.aio.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(target, options=options)
        self.chat = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.workers = worker_pb2_grpc.WorkerServiceStub(self.channel)
        self.network = network_pb2_grpc.NetworkServiceStub(self.channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(self.channel)
        self.treasury = treasury_pb2_grpc.TreasuryServiceStub(self.channel)
        self.images = image_pb2_grpc.ImageServiceStub(self.channel)
        self.relay = relay_pb2_grpc.RelayServiceStub(self.channel)
        self.mux = Mux(
            self.chat,
            max_buffer_bytes=settings.sse_max_buffer_bytes,
            keepalive_s=settings.sse_keepalive_s,
            coalesce_s=settings.sse_coalesce_s,
            connect_wait_s=settings.core_connect_wait_s,
            metadata=relayed,
        )
        self.primer = Primer(self.mux, hold_s=settings.sse_prime_s)
        """Watches opened as sends are answered, for their senders' streams."""
        self.sender = Sender(
            self.chat, connect_wait_s=settings.core_connect_wait_s, metadata=relayed, tracer=tracer
        )

        self.overhead = Overhead()
        """What the gateway added to each answer (``x-ashao-overhead-ms``), per surface."""
        self.watchdog = SendWatchdog(settings.sse_send_timeout_s)
        self.relay_coalescer = Coalescer(settings.sse_coalesce_s)
        """Paces the writes of relay streams (the mux paces its own)."""
        self.timeout = settings.call_timeout_s

    def start(self) -> None:
        """Open the subscription stream and start the SSE send watchdog."""
        self.mux.start()
        self.sender.start()
        self.watchdog.start()

    async def close(self) -> None:
        """End the subscriptions, then the channel."""
        self.primer.close()
        await self.mux.shutdown()
        await self.sender.shutdown()
        await self.watchdog.stop()
        self.relay_coalescer.close()
        await self.channel.close(grace=1.0)


async def get_core(request: Request) -> CoreClient:
    """The CoreClient the lifespan opened (async: FastAPI would run a plain function in a thread)."""
    core: CoreClient = request.app.state.core
    return core


Core = Annotated[CoreClient, Depends(get_core)]
"""Route parameter alias: the connection to the core."""
