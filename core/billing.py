"""What a job costs and where its money goes, as ledger moves.

Admission reserves the tier's cost from the payer into escrow, in the same unit as the job's
insert. Completion splits that escrow into the worker's earnings, the treasury and the burn;
failure, expiry or cancellation returns it to the payer. Each job is settled exactly once. The
amount is the tier's posted per-message cost: nothing a worker reports changes what anyone pays.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.economics import TIERS
from core.ledger import BURN, ESCROW, TREASURY, Ledger, Move, user_account, worker_account
from core.store import Statement


@dataclass(frozen=True, slots=True)
class Booking:
    """Rows to write with the causing state change, and how to undo them in memory if that fails."""

    statements: list[Statement]
    moves: list[Move]


NOTHING = Booking([], [])


class Billing:
    """Charges, payouts and refunds of jobs."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def charge(self, *, job_id: str, tier: str, payer: str) -> Booking:
        """Reserve the tier's cost from ``payer`` (raises PAYMENT_REQUIRED when short)."""
        cost = TIERS[tier].credit_cost
        if cost == 0:
            return NOTHING
        moves = [Move(user_account(payer), ESCROW, cost, "charge", job_id)]
        return Booking(self.ledger.moves(moves), moves)

    def payout(self, *, job_id: str, tier: str, cost: int, worker_id: str) -> Booking:
        """Split a completed job's escrow: worker earnings, treasury, burn."""
        if cost == 0:
            return NOTHING
        worker, treasury, burn = TIERS[tier].split(cost)
        moves = [
            m
            for m in (
                Move(ESCROW, worker_account(worker_id), worker, "payout_worker", job_id),
                Move(ESCROW, TREASURY, treasury, "payout_treasury", job_id),
                Move(ESCROW, BURN, burn, "burn", job_id),
            )
            if m.amount > 0
        ]
        settle = self.ledger.settle(job_id, "paid")
        return Booking([settle, *self.ledger.moves(moves)], moves)

    def refund(self, *, job_id: str, cost: int, payer: str) -> Booking:
        """Return a failed job's escrow to its payer."""
        if cost == 0:
            return NOTHING
        moves = [Move(ESCROW, user_account(payer), cost, "refund", job_id)]
        settle = self.ledger.settle(job_id, "refunded")
        return Booking([settle, *self.ledger.moves(moves)], moves)
