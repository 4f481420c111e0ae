"""TreasuryService: treasury figures and staking."""

from __future__ import annotations

from ashao.v1 import treasury_pb2, treasury_pb2_grpc
from core.grpc.context import Callers, Ctx, bearer
from core.identity.directory import Directory
from core.identity.principal import require_user
from core.money.treasury import Treasury


class TreasuryServicer(treasury_pb2_grpc.TreasuryServiceServicer):
    """Treasury figures and staking."""

    def __init__(self, *, treasury: Treasury, directory: Directory, callers: Callers) -> None:
        self._t = treasury
        self._directory = directory
        self._callers = callers

    async def _user(self, context: Ctx) -> str:
        return require_user(await self._directory.resolve(bearer(context), self._callers.ip(context)))

    async def GetTreasury(
        self, request: treasury_pb2.GetTreasuryRequest, context: Ctx
    ) -> treasury_pb2.GetTreasuryResponse:
        """Figures now and the series."""
        series = await self._t.series(request.limit)
        return treasury_pb2.GetTreasuryResponse(
            current=(await self._t.current()).to_proto(), series=[s.to_proto() for s in series]
        )

    async def Stake(self, request: treasury_pb2.StakeRequest, context: Ctx) -> treasury_pb2.StakeResponse:
        """Stake."""
        pos = await self._t.move_stake(await self._user(context), request.amount, stake=True)
        return treasury_pb2.StakeResponse(position=pos.to_proto())

    async def Unstake(
        self, request: treasury_pb2.UnstakeRequest, context: Ctx
    ) -> treasury_pb2.UnstakeResponse:
        """Unstake."""
        pos = await self._t.move_stake(await self._user(context), request.amount, stake=False)
        return treasury_pb2.UnstakeResponse(position=pos.to_proto())

    async def GetStaking(
        self, request: treasury_pb2.GetStakingRequest, context: Ctx
    ) -> treasury_pb2.GetStakingResponse:
        """The caller's position."""
        return treasury_pb2.GetStakingResponse(
            position=(await self._t.position(await self._user(context))).to_proto()
        )
