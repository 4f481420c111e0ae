"""Treasury figures, snapshots for charts, and staking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from core import economics
from core.errors import InvalidArgumentError, PaymentRequiredError
from core.ledger import BURN, MINT, TREASURY, Ledger, Move, stake_account, user_account
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


@dataclass(frozen=True, slots=True)
class Position:
    """A holder's staking position."""

    balance: int
    staked: int
    rewards: int


class Treasury:
    """Figures derived from the ledger; staking moves; the snapshot schedule."""

    def __init__(
        self, *, store: Store, ledger: Ledger, interval_s: float = economics.SNAPSHOT_INTERVAL_S
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Take snapshots on the schedule."""
        self._task = asyncio.create_task(self._every_interval(), name="ashao-treasury")

    async def shutdown(self) -> None:
        """Stop the schedule. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except Exception:
                log.exception("treasury snapshot failed")

    def current(self) -> Snapshot:
        """Figures now, from the ledger's projection."""
        minted = -self._ledger.balance(MINT)
        burned = self._ledger.balance(BURN)
        balance = self._ledger.balance(TREASURY)
        circulating = minted - burned - balance
        rewards = sum(self._ledger.total(r) for r in REWARD_REASONS)
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
        snap = self.current()
        await self._store.write(
            [
                (
                    "INSERT OR REPLACE INTO treasury_snapshots (at, balance, total_burned, rewards_paid,"
                    " circulating_supply, price) VALUES (?,?,?,?,?,?)",
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

    async def series(self, limit: int) -> list[Snapshot]:
        """The newest ``limit`` snapshots, oldest first."""
        rows = await self._store.fetchall(
            "SELECT at, balance, total_burned, rewards_paid, circulating_supply, price FROM treasury_snapshots"
            " ORDER BY at DESC LIMIT ?",
            (limit,),
        )
        return [Snapshot(*r) for r in reversed(rows)]

    async def pay_staking_rewards(self) -> int:
        """The staking rule of core/economics.py; returns what was paid."""
        stakes = {a: b for a, b in self._ledger.balances().items() if a.startswith("stake:") and b > 0}
        total = sum(stakes.values())
        pool = self._ledger.balance(TREASURY) * economics.STAKING_REWARD_BPS // economics.BPS
        if not total or pool <= 0:
            return 0
        moves = []
        for account, staked in sorted(stakes.items()):
            share = pool * staked // total
            if share > 0:
                moves.append(Move(TREASURY, user_account(account.split(":", 1)[1]), share, "staking_reward"))
        if not moves:
            return 0
        rows = self._ledger.moves(moves)
        try:
            await self._store.write(rows)
        except Exception:
            self._ledger.revert(moves)
            raise
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
            rows = self._ledger.moves([move])
        except PaymentRequiredError as exc:
            held = self._ledger.balance(src)
            what = "balance" if stake else "stake"
            raise InvalidArgumentError(f"amount: more than your {what} ({held})", field="amount") from exc
        try:
            await self._store.write(rows)
        except Exception:
            self._ledger.revert([move])
            raise
        return await self.position(user_id)

    async def position(self, user_id: str) -> Position:
        """A holder's position."""
        row = await self._store.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE reason = 'staking_reward' AND credit = ?",
            (user_account(user_id),),
        )
        return Position(
            self._ledger.balance(user_account(user_id)),
            self._ledger.balance(stake_account(user_id)),
            int(row[0]) if row else 0,
        )
