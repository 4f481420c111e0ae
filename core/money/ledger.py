"""The double-entry ledger of credits.

Every movement is one row ``(debit_account, credit_account, amount, reason, ref)``: ``amount``
leaves the debit account and enters the credit account. Rows are only ever appended, always in the
same group-commit unit as the state change that caused them (a send, a completion, a refund), so a
crash can never separate money from its cause.

Balances are behind the seam of core/money/balances.py: admission checks a spend against them
without locking any row that every job touches. The ``mint`` account is the issuer; its balance is
minus everything minted, so the sum over all accounts is always zero and the sum over all other
accounts equals what was minted.

A job's escrow is settled once: ``settlements`` has the job id as primary key, so a job can never be
both paid out and refunded, even if two paths (or two cores) raced to settle it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.errors import PaymentRequiredError
from core.money.balances import MINT, Balances, MemoryBalances, Move
from core.store import ConstraintError, Statement, Store, now_ms

ESCROW = "escrow"
TREASURY = "treasury"
BURN = "burn"

__all__ = ["BURN", "ESCROW", "MINT", "TREASURY", "Booking", "Ledger", "Move"]


def user_account(user_id: str) -> str:
    """The credit account of a user."""
    return f"user:{user_id}"


def stake_account(user_id: str) -> str:
    """The staked balance of a user."""
    return f"stake:{user_id}"


def worker_account(worker_id: str) -> str:
    """The earnings account of a worker."""
    return f"worker:{worker_id}"


@dataclass(frozen=True, slots=True)
class Booking:
    """Rows to write with the causing state change, and what to undo in memory if that unit fails."""

    statements: list[Statement] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    settled: str = ""
    """The job whose escrow this booking settles, if any."""


NOTHING = Booking()


class Ledger:
    """Ledger rows for the store; balances behind their seam. Callers add a booking's statements to
    their own unit, and call ``undo`` if that unit fails."""

    def __init__(self, store: Store, balances: Balances | None = None) -> None:
        self._store = store
        self.balances: Balances = balances if balances is not None else MemoryBalances()
        self._settled: set[str] = set()

    async def load(self) -> None:
        """Get the balances ready, and learn which jobs are settled."""
        await self.balances.load(self._store)
        self._settled = {r[0] for r in await self._store.fetchall("SELECT job_id FROM settlements")}

    async def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        return await self.balances.total(reason)

    async def balance(self, account: str) -> int:
        """The balance of ``account``."""
        return await self.balances.balance(account)

    def book(
        self,
        moves: Iterable[Move],
        *,
        settles: str = "",
        outcome: str = "paid",
        allow_negative: Iterable[str] = (MINT,),
    ) -> Booking:
        """Reserve ``moves`` and return the rows to write with the causing change.

        Refuses (raising, with nothing applied) what can be told now: an overdraft an in-memory
        projection sees, or a job this core already settled (``outcome``: "paid" or "refunded"). The
        store refuses the rest (``ConstraintError``) when the unit commits. If the caller's unit fails,
        it must call ``undo(booking)``.
        """
        moves = list(moves)
        if settles and settles in self._settled:
            raise PaymentRequiredError(f"job {settles} is already settled")
        rows = self.balances.reserve(moves, allow_negative=frozenset(allow_negative))
        now = now_ms()
        rows += [
            (
                "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,?,?)",
                (m.debit, m.credit, m.amount, m.reason, m.ref, now),
            )
            for m in moves
        ]
        if settles:
            self._settled.add(settles)
            rows.insert(
                0,
                (
                    "INSERT INTO settlements (job_id, outcome, created_at) VALUES (?,?,?)",
                    (settles, outcome, now),
                ),
            )
        return Booking(rows, moves, settles)

    async def commit(self, moves: Iterable[Move], *, allow_negative: Iterable[str] = (MINT,)) -> None:
        """Book ``moves`` in a unit of their own and wait until it is durable (undone if it fails). An
        overdraft the store refuses is PAYMENT_REQUIRED, as one refused at once would be."""
        booking = self.book(moves, allow_negative=allow_negative)
        try:
            await self._store.write(booking.statements)
        except ConstraintError as exc:
            self.undo(booking)
            raise PaymentRequiredError("not enough credits") from exc
        except BaseException:
            self.undo(booking)
            raise

    def undo(self, booking: Booking) -> None:
        """Undo ``booking`` in memory: its unit did not commit."""
        self.balances.undo(booking.moves)
        if booking.settled:
            self._settled.discard(booking.settled)

    def is_settled(self, job_id: str) -> bool:
        """Whether this core knows a job's escrow was paid out or refunded."""
        return job_id in self._settled
