"""What a job costs and where its money goes, as ledger bookings.

Admission reserves the tier's cost from the payer into escrow, in the same unit as the job's
insert. Completion splits that escrow into the worker's earnings, the treasury and the burn;
failure, expiry or cancellation returns it to the payer. Each job is settled exactly once. The
amount is the tier's posted per-message cost: nothing a worker reports changes what anyone pays.
"""

from __future__ import annotations

from core.economics import TIERS
from core.money.ledger import (
    BURN,
    ESCROW,
    NOTHING,
    TREASURY,
    Booking,
    Ledger,
    Move,
    user_account,
    worker_account,
)

__all__ = ["NOTHING", "Billing", "Booking"]


class Billing:
    """Charges, payouts and refunds of jobs."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def charge(self, *, job_id: str, tier: str, payer: str) -> Booking:
        """Reserve the tier's cost from ``payer`` (raises PAYMENT_REQUIRED when short)."""
        cost = TIERS[tier].credit_cost
        if cost == 0 or not payer:
            return NOTHING
        return self.ledger.book([Move(user_account(payer), ESCROW, cost, "charge", job_id)])

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
        return self.ledger.book(moves, settles=job_id, outcome="paid")

    def refund(self, *, job_id: str, cost: int, payer: str) -> Booking:
        """Return a failed job's escrow to its payer."""
        if cost == 0:
            return NOTHING
        return self.ledger.book(
            [Move(ESCROW, user_account(payer), cost, "refund", job_id)], settles=job_id, outcome="refunded"
        )

    def undo(self, booking: Booking) -> None:
        """Undo ``booking`` in memory: its unit did not commit."""
        self.ledger.undo(booking)
