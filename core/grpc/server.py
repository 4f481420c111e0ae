"""The gRPC server of the core."""

from __future__ import annotations

import grpc

from ashao.v1 import (
    account_pb2,
    account_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    image_pb2,
    image_pb2_grpc,
    network_pb2,
    network_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    relay_pb2,
    relay_pb2_grpc,
    treasury_pb2,
    treasury_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from ashao_common.tracing import Tracer
from core.config import CoreSettings
from core.grpc.account import AccountServicer
from core.grpc.chat import ChatServicer
from core.grpc.context import Callers
from core.grpc.health import Health, service_names
from core.grpc.image import ImageServicer
from core.grpc.network import NetworkServicer
from core.grpc.operator import OperatorServicer
from core.grpc.relay import RelayServicer
from core.grpc.status import ErrorCounts, ErrorInterceptor
from core.grpc.treasury import TreasuryServicer
from core.grpc.worker import WorkerServicer
from core.identity.accounts import AccountService
from core.identity.relays import RelayKeys
from core.images.service import ImageService
from core.jobs.system import JobSystem
from core.money.treasury import Treasury
from core.relay.documents import RelayDocuments
from core.relay.pipeline import Relay
from core.relay.signing import Signer

# Keepalive chosen deliberately: clients (workers behind NAT, the facade) may ping every 10 s or
# more to keep long-lived streams open; faster pings are refused rather than tolerated.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]

SERVICES = service_names(
    m.DESCRIPTOR
    for m in (
        account_pb2,
        chat_pb2,
        image_pb2,
        network_pb2,
        operator_pb2,
        relay_pb2,
        treasury_pb2,
        worker_pb2,
    )
)
"""Full names of the core's own services (what reflection lists, besides itself and health)."""


def build_server(
    *,
    settings: CoreSettings,
    jobs: JobSystem,
    accounts: AccountService,
    treasury: Treasury,
    images: ImageService,
    relay: Relay,
    documents: RelayDocuments,
    signer: Signer,
    relays: RelayKeys,
    health: Health,
    errors: ErrorCounts | None = None,
    tracer: Tracer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A server with every servicer added (and the standard health and reflection services), bound to
    ``settings.grpc_addr``; returns (server, port). ``errors`` counts refused calls (for /metrics);
    ``tracer`` (tracing on) traces sends."""
    directory = accounts.directory
    callers = Callers(relays)
    errors = errors if errors is not None else ErrorCounts()

    def sign(body: bytes) -> tuple[str, str]:
        return signer.sign(body), signer.key_id

    server = grpc.aio.server(interceptors=[ErrorInterceptor(sign, errors)], options=SERVER_OPTIONS)
    chat_pb2_grpc.add_ChatServiceServicer_to_server(
        ChatServicer(
            jobs=jobs,
            directory=directory,
            callers=callers,
            max_tokens_per_message=settings.subscribe_max_tokens_per_message,
            max_watches=settings.subscribe_max_watches,
            max_watches_untrusted=settings.subscribe_max_watches_untrusted,
            pace_max_s=settings.subscribe_pace_max_ms / 1000,
            pace_full_rate=settings.subscribe_pace_full_tokens_per_s,
            pace_floor_rate=settings.subscribe_pace_floor_tokens_per_s,
            errors=errors,
            tracer=tracer,
        ),
        server,
    )
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(jobs=jobs, settings=settings, callers=callers), server
    )
    network_pb2_grpc.add_NetworkServiceServicer_to_server(
        NetworkServicer(jobs=jobs, settings=settings), server
    )
    account_pb2_grpc.add_AccountServiceServicer_to_server(
        AccountServicer(service=accounts, callers=callers), server
    )
    treasury_pb2_grpc.add_TreasuryServiceServicer_to_server(
        TreasuryServicer(treasury=treasury, directory=directory, callers=callers), server
    )
    image_pb2_grpc.add_ImageServiceServicer_to_server(
        ImageServicer(images=images, directory=directory, callers=callers), server
    )
    operator_pb2_grpc.add_OperatorServiceServicer_to_server(
        OperatorServicer(jobs=jobs, directory=directory, callers=callers), server
    )
    relay_pb2_grpc.add_RelayServiceServicer_to_server(
        RelayServicer(relay=relay, documents=documents, directory=directory, callers=callers), server
    )
    health.register(server, SERVICES)
    if settings.tls_cert_file is not None or settings.tls_key_file is not None:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            raise ValueError("ASHAO_TLS_CERT_FILE and ASHAO_TLS_KEY_FILE go together")
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())]
        )
        port = server.add_secure_port(settings.grpc_addr, credentials)
    else:
        port = server.add_insecure_port(settings.grpc_addr)
    if port == 0:
        raise OSError(f"cannot listen on {settings.grpc_addr}")
    return server, port
