"""The double-entry ledger of credits.

Every movement is one row ``(debit_account, credit_account, amount, reason, ref)``: ``amount``
leaves the debit account and enters the credit account. Rows are only ever appended, always in the
same group-commit unit as the state change that caused them (a send, a completion, a refund), so a
crash can never separate money from its cause.

Balances are projected in memory from the rows (rebuilt at start), so admission is a check against
memory, serialised by the event loop: no row of a shared account (treasury, burn, escrow) is ever
locked on the request path. The ``mint`` account is the issuer; its balance is minus everything
minted, so the sum over all accounts is always zero and the sum over all other accounts equals
what was minted.

A job's escrow is settled once: ``settlements`` has the job id as primary key, so a job can never be
both paid out and refunded, even if two paths raced to settle it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import InvalidArgumentError, PaymentRequiredError
from core.store import Statement, Store, now_ms

MINT = "mint"
ESCROW = "escrow"
TREASURY = "treasury"
BURN = "burn"


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
class Move:
    """One ledger row to be written."""

    debit: str
    credit: str
    amount: int
    reason: str
    ref: str = ""


class Ledger:
    """Balances in memory, rows in the store. Callers add the returned statements to their unit."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._balances: defaultdict[str, int] = defaultdict(int)
        self._settled: set[str] = set()
        self._by_reason: defaultdict[str, int] = defaultdict(int)

    async def load(self) -> None:
        """Rebuild every balance from the rows."""
        self._balances.clear()
        rows = await self._store.fetchall(
            "SELECT account, SUM(delta) FROM ("
            " SELECT credit AS account, amount AS delta FROM ledger"
            " UNION ALL SELECT debit AS account, -amount AS delta FROM ledger"
            ") GROUP BY account"
        )
        for account, total in rows:
            self._balances[account] = int(total)
        self._settled = {r[0] for r in await self._store.fetchall("SELECT job_id FROM settlements")}
        self._by_reason.clear()
        for reason, total in await self._store.fetchall(
            "SELECT reason, SUM(amount) FROM ledger GROUP BY reason"
        ):
            self._by_reason[reason] = int(total)

    def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        return self._by_reason.get(reason, 0)

    def balance(self, account: str) -> int:
        """The projected balance of ``account``."""
        return self._balances.get(account, 0)

    def balances(self) -> dict[str, int]:
        """A copy of every non-zero balance."""
        return {k: v for k, v in self._balances.items() if v}

    def moves(self, moves: Iterable[Move], *, allow_negative: Iterable[str] = (MINT,)) -> list[Statement]:
        """Apply ``moves`` to the projection and return the rows to write with the causing change.

        Refuses (raising, with nothing applied) if any account other than ``allow_negative`` would go
        below zero. The caller must submit the statements in the same unit as its own.
        """
        moves = list(moves)
        negative_ok = set(allow_negative)
        delta: defaultdict[str, int] = defaultdict(int)
        for m in moves:
            if m.amount <= 0 or not isinstance(m.amount, int):
                raise InvalidArgumentError("amount: must be a positive integer", field="amount")
            delta[m.debit] -= m.amount
            delta[m.credit] += m.amount
        for account, d in delta.items():
            if d < 0 and account not in negative_ok and self._balances.get(account, 0) + d < 0:
                raise PaymentRequiredError(
                    f"not enough credits: {account.split(':', 1)[0]} balance "
                    f"{self._balances.get(account, 0)}, needs {-d}"
                )
        for account, d in delta.items():
            self._balances[account] += d
        for m in moves:
            self._by_reason[m.reason] += m.amount
        now = now_ms()
        return [
            (
                "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,?,?)",
                (m.debit, m.credit, m.amount, m.reason, m.ref, now),
            )
            for m in moves
        ]

    def revert(self, moves: Iterable[Move]) -> None:
        """Undo ``moves`` in the projection (their unit failed to commit)."""
        for m in moves:
            self._balances[m.debit] += m.amount
            self._balances[m.credit] -= m.amount
            self._by_reason[m.reason] -= m.amount

    def settle(self, job_id: str, outcome: str) -> Statement:
        """Mark a job's escrow settled; raises if it already was. The row's primary key enforces it too."""
        if job_id in self._settled:
            raise PaymentRequiredError(f"job {job_id} is already settled")
        self._settled.add(job_id)
        return (
            "INSERT INTO settlements (job_id, outcome, created_at) VALUES (?,?,?)",
            (job_id, outcome, now_ms()),
        )

    def is_settled(self, job_id: str) -> bool:
        """Whether a job's escrow was paid out or refunded."""
        return job_id in self._settled
