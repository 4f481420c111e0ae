"""NetworkService: live figures, and what the network offers and accepts."""

from __future__ import annotations

from ashao.v1 import network_pb2, network_pb2_grpc
from core.config import CoreSettings
from core.economics import TIERS, TIERS_BY_PRIORITY
from core.grpc.context import Ctx
from core.jobs.system import JobSystem
from core.workers.registry import MAX_SLOTS


class NetworkServicer(network_pb2_grpc.NetworkServiceServicer):
    """Network figures."""

    def __init__(self, *, jobs: JobSystem, settings: CoreSettings) -> None:
        self._jobs = jobs
        self._settings = settings

    async def GetStats(
        self, request: network_pb2.GetStatsRequest, context: Ctx
    ) -> network_pb2.GetStatsResponse:
        """Live network figures: the totals, and per tier what waits, what runs and who can take it."""
        s, load = self._jobs.snapshot(), self._jobs.load()
        return network_pb2.GetStatsResponse(
            active_workers=s.active_workers,
            queue_depth=s.queue_depth,
            jobs_completed=s.jobs_completed,
            tokens_per_sec=s.tokens_per_sec,
            tiers=[
                network_pb2.TierLoad(
                    tier=t.tier,
                    queued=t.queued,
                    running=t.running,
                    oldest_wait_s=t.oldest_wait_s,
                    workers=t.workers,
                    free_slots=t.free_slots,
                )
                for t in load.tiers
            ],
            connected_workers=s.live_workers,
            slots=load.slots,
            busy_slots=load.busy_slots,
            jobs_streaming=s.jobs_streaming,
            followers=load.followers,
            oldest_wait_s=s.oldest_wait_s,
        )

    async def GetNetworkInfo(
        self, request: network_pb2.GetNetworkInfoRequest, context: Ctx
    ) -> network_pb2.GetNetworkInfoResponse:
        """The tiers and the limits clients and workers must respect."""
        return network_pb2.GetNetworkInfoResponse(
            tiers=[
                network_pb2.TierInfo(
                    name=t.name,
                    model=t.model,
                    kind=network_pb2.TIER_KIND_CHAT if t.chat else network_pb2.TIER_KIND_IMAGE,
                    credit_cost=t.credit_cost,
                    max_tokens=t.max_tokens,
                    priority=t.priority,
                )
                for t in (TIERS[name] for name in TIERS_BY_PRIORITY)
            ],
            max_worker_slots=MAX_SLOTS,
            max_content_chars=self._settings.max_content_chars,
        )
