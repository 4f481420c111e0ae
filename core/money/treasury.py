"""Treasury figures, snapshots for charts, and staking."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ashao.v1 import treasury_pb2
from core import economics
from core.errors import InvalidArgumentError, PaymentRequiredError
from core.money.ledger import BURN, MINT, TREASURY, Ledger, Move, stake_account, user_account
from core.store import Store, now_ms

log = logging.getLogger("ashao.core.treasury")

REWARD_REASONS = ("payout_worker", "staking_reward")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Treasury figures at one moment."""

    at_ms: int
    balance: int
    total_burned: int
    rewards_paid: int
    circulating_supply: int
    price: float

    def to_proto(self) -> treasury_pb2.TreasurySnapshot:
        """The wire form."""
        return treasury_pb2.TreasurySnapshot(
            at_ms=self.at_ms,
            balance=self.balance,
            total_burned=self.total_burned,
            rewards_paid=self.rewards_paid,
            circulating_supply=self.circulating_supply,
            price=self.price,
        )


@dataclass(frozen=True, slots=True)
class Position:
    """A holder's staking position."""

    balance: int
    staked: int
    rewards: int

    def to_proto(self) -> treasury_pb2.StakingPosition:
        """The wire form."""
        return treasury_pb2.StakingPosition(balance=self.balance, staked=self.staked, rewards=self.rewards)


class Treasury:
    """Figures derived from the ledger; staking moves; the snapshot schedule."""

    def __init__(
        self, *, store: Store, ledger: Ledger, interval_s: float = economics.SNAPSHOT_INTERVAL_S
    ) -> None:
        self._store = store
        self._ledger = ledger
        self.interval_s = interval_s
        """How often ``tick`` should run (the composition root schedules it)."""

    async def current(self) -> Snapshot:
        """Figures now, from the ledger."""
        minted = -(await self._ledger.balance(MINT))
        burned = await self._ledger.balance(BURN)
        balance = await self._ledger.balance(TREASURY)
        circulating = minted - burned - balance
        rewards = sum([await self._ledger.total(r) for r in REWARD_REASONS])
        return Snapshot(
            now_ms(),
            balance,
            burned,
            rewards,
            circulating,
            economics.price(treasury_balance=balance, circulating_supply=circulating),
        )

    async def tick(self) -> Snapshot:
        """Pay staking rewards, then record a snapshot (and prune the oldest past the bound)."""
        await self.pay_staking_rewards()
        snap = await self.current()
        await self._store.write(
            [
                (
                    "INSERT INTO treasury_snapshots (at, balance, total_burned, rewards_paid,"
                    " circulating_supply, price) VALUES (?,?,?,?,?,?) ON CONFLICT (at) DO UPDATE SET"
                    " balance = excluded.balance, total_burned = excluded.total_burned,"
                    " rewards_paid = excluded.rewards_paid, circulating_supply = excluded.circulating_supply,"
                    " price = excluded.price",
                    (
                        snap.at_ms,
                        snap.balance,
                        snap.total_burned,
                        snap.rewards_paid,
                        snap.circulating_supply,
                        snap.price,
                    ),
                ),
                (
                    "DELETE FROM treasury_snapshots WHERE at NOT IN"
                    " (SELECT at FROM treasury_snapshots ORDER BY at DESC LIMIT ?)",
                    (economics.SNAPSHOTS_KEPT,),
                ),
            ]
        )
        return snap

    async def series(self, limit: int = 0) -> list[Snapshot]:
        """The newest ``limit`` snapshots (0: the default page), oldest first; at most a full page."""
        limit = min(limit or economics.SNAPSHOT_PAGE_DEFAULT, economics.SNAPSHOTS_KEPT)
        rows = await self._store.fetchall(
            "SELECT at, balance, total_burned, rewards_paid, circulating_supply, price FROM treasury_snapshots"
            " ORDER BY at DESC LIMIT ?",
            (limit,),
        )
        return [Snapshot(*r) for r in reversed(rows)]

    async def pay_staking_rewards(self) -> int:
        """The staking rule of core/economics.py; returns what was paid."""
        stakes = {
            a: b
            for a, b in (await self._ledger.balances.snapshot()).items()
            if a.startswith("stake:") and b > 0
        }
        total = sum(stakes.values())
        pool = await self._ledger.balance(TREASURY) * economics.STAKING_REWARD_BPS // economics.BPS
        if not total or pool <= 0:
            return 0
        moves = []
        # One payment per interval (its number is the ref): a second core paying the same interval is
        # refused by the store (a unique index), so rewards are never paid twice.
        period = f"reward:{now_ms() // int(self.interval_s * 1000)}"
        for account, staked in sorted(stakes.items()):
            share = pool * staked // total
            if share > 0:
                moves.append(
                    Move(TREASURY, user_account(account.split(":", 1)[1]), share, "staking_reward", period)
                )
        if not moves:
            return 0
        try:
            await self._ledger.commit(moves)
        except PaymentRequiredError:
            return 0  # paid for this interval already (or the treasury moved meanwhile): next interval
        return sum(m.amount for m in moves)

    async def move_stake(self, user_id: str, amount: int, *, stake: bool) -> Position:
        """Stake (or unstake) ``amount``: positive integers only, never more than held."""
        if amount <= 0:
            raise InvalidArgumentError("amount: must be a positive integer", field="amount")
        src, dst = user_account(user_id), stake_account(user_id)
        if not stake:
            src, dst = dst, src
        move = Move(src, dst, amount, "stake" if stake else "unstake", user_id)
        try:
            await self._ledger.commit([move])
        except PaymentRequiredError as exc:
            held = await self._ledger.balance(src)
            what = "balance" if stake else "stake"
            raise InvalidArgumentError(f"amount: more than your {what} ({held})", field="amount") from exc
        return await self.position(user_id)

    async def position(self, user_id: str) -> Position:
        """A holder's position."""
        row = await self._store.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE reason = 'staking_reward' AND credit = ?",
            (user_account(user_id),),
        )
        return Position(
            await self._ledger.balance(user_account(user_id)),
            await self._ledger.balance(stake_account(user_id)),
            int(row[0]) if row else 0,
        )
