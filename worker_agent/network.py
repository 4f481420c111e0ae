"""What the network offers, as the core says (``NetworkService.GetNetworkInfo``), and what of it this
worker announces.

The agent asks once when it starts rather than copy the core's tiers and limits: a core that adds a
tier or changes a limit needs no new agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ashao.v1 import network_pb2
from worker_agent import AgentError
from worker_agent.config import AgentSettings

if TYPE_CHECKING:
    from ashao.v1 import network_pb2_grpc

    Stub = network_pb2_grpc.NetworkServiceAsyncStub


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """The tiers of the network by kind, and the limits a worker must respect."""

    chat_tiers: tuple[str, ...]
    """Tiers served by chat backends, highest priority first."""
    image_tiers: tuple[str, ...]
    """Tiers served by image backends."""
    max_worker_slots: int
    """Most jobs one worker may run at once."""

    @classmethod
    def from_proto(cls, r: network_pb2.GetNetworkInfoResponse) -> NetworkInfo:
        """From the core's answer (tiers of other kinds, unknown to this agent, are left out)."""
        return cls(
            chat_tiers=tuple(t.name for t in r.tiers if t.kind == network_pb2.TIER_KIND_CHAT),
            image_tiers=tuple(t.name for t in r.tiers if t.kind == network_pb2.TIER_KIND_IMAGE),
            max_worker_slots=r.max_worker_slots,
        )

    def tiers_for(self, settings: AgentSettings) -> tuple[str, ...]:
        """The tiers to announce: ``--tiers`` if given, else every chat tier with a chat backend and
        every image tier with an image backend. Raises AgentError when the settings do not fit the
        network (a tier no backend of this worker can serve, more slots than the core allows)."""
        if settings.slots > self.max_worker_slots:
            raise AgentError(
                f"--slots {settings.slots} is more than the core allows "
                f"(at most {self.max_worker_slots} jobs at once per worker)"
            )
        if not settings.tiers:
            chat = self.chat_tiers if settings.backend else ()
            image = self.image_tiers if settings.image_backend else ()
            return (*chat, *image)
        chat = tuple(t for t in settings.tiers if t in self.chat_tiers)
        if chat and settings.backend is None:
            raise AgentError(f"--tiers names chat tiers ({','.join(chat)}) but no --backend is given")
        image = tuple(t for t in settings.tiers if t in self.image_tiers)
        if image and settings.image_backend is None:
            raise AgentError(f"--tiers names image tiers ({','.join(image)}) but no --image-backend is given")
        return settings.tiers  # a tier the network does not know: the core refuses it, with its reason


async def fetch_network_info(stub: Stub, *, timeout_s: float) -> NetworkInfo:
    """Ask the core; raises ``grpc.aio.AioRpcError`` as the call does."""
    r = await stub.GetNetworkInfo(network_pb2.GetNetworkInfoRequest(), timeout=timeout_s)
    return NetworkInfo.from_proto(r)
