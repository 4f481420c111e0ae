"""The standard gRPC health and reflection services of the core.

With them, generic tools work against the core unchanged: ``grpcurl`` and ``buf curl`` list its services
and call them without a copy of proto/, and Kubernetes probes, Envoy or any gRPC load balancer read
``grpc.health.v1.Health`` to know whether to send it traffic.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
"""``grpc.health.v1.Health``."""


def service_names(files: Iterable[FileDescriptor]) -> list[str]:
    """The full names of the services the proto ``files`` define (``ashao.v1.ChatService``, ...)."""
    return [s.full_name for f in files for s in f.services_by_name.values()]


class Health:
    """The core's serving state, as the standard health service reports it.

    The server as a whole (service ``""``) and each of its services are SERVING from the moment the
    server starts (it starts only once the store is open and the jobs are recovered), and NOT_SERVING
    from the first step of shutdown, before the server stops taking calls: a balancer that watches
    the health stream moves traffic away while the core still finishes what it has.
    """

    def __init__(self) -> None:
        self._servicer = HealthServicer()
        self._services: list[str] = []

    def register(self, server: grpc.aio.Server, services: list[str]) -> None:
        """Serve health and reflection on ``server`` (not yet started) for ``services``."""
        self._services = services
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)

    async def serving(self) -> None:
        """The whole server and each of its services are SERVING (call it as the server starts)."""
        for name in ("", *self._services):
            await self._servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def shutting_down(self) -> None:
        """Every service is NOT_SERVING from now on, for good (watchers are told at once)."""
        await self._servicer.enter_graceful_shutdown()
