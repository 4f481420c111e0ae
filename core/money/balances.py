"""The balances seam: the projection of the ledger that admission checks against.

Admission must decide "does this payer have the credits" without a round trip and without locking a
shared row, so balances are projected from the ledger's rows. ``Balances`` is the seam; the one
implementation here, ``MemoryBalances``, holds the projection of one core in memory (rebuilt from
the rows at start). A reservation is applied at once (so two concurrent sends cannot both spend the
same credits) and reverted if the unit that carries its rows fails to commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from core.errors import InvalidArgumentError, PaymentRequiredError
from core.store import Store

MINT = "mint"
"""The issuer: its balance is minus everything minted, so all balances always sum to zero."""


@dataclass(frozen=True, slots=True)
class Move:
    """One ledger row: ``amount`` leaves ``debit`` and enters ``credit``."""

    debit: str
    credit: str
    amount: int
    reason: str
    ref: str = ""


class Balances(Protocol):
    """Balances per account, and totals per reason."""

    async def load(self, store: Store) -> None:
        """Rebuild from the ledger's rows."""
        ...

    def balance(self, account: str) -> int:
        """The balance of ``account``."""
        ...

    def snapshot(self) -> dict[str, int]:
        """Every non-zero balance."""
        ...

    def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        ...

    def apply(self, moves: list[Move], *, allow_negative: frozenset[str]) -> None:
        """Apply ``moves``, or raise PAYMENT_REQUIRED (nothing applied) if an account outside
        ``allow_negative`` would go below zero."""
        ...

    def revert(self, moves: Iterable[Move]) -> None:
        """Undo ``moves`` (the unit carrying them did not commit)."""
        ...


class MemoryBalances:
    """The projection of this process, in memory."""

    def __init__(self) -> None:
        self._balances: defaultdict[str, int] = defaultdict(int)
        self._by_reason: defaultdict[str, int] = defaultdict(int)

    async def load(self, store: Store) -> None:
        """Sum every row per account and per reason."""
        self._balances.clear()
        self._by_reason.clear()
        rows = await store.fetchall(
            "SELECT account, SUM(delta) FROM ("
            " SELECT credit AS account, amount AS delta FROM ledger"
            " UNION ALL SELECT debit AS account, -amount AS delta FROM ledger"
            ") t GROUP BY account"
        )
        for account, total in rows:
            self._balances[account] = int(total)
        for reason, total in await store.fetchall("SELECT reason, SUM(amount) FROM ledger GROUP BY reason"):
            self._by_reason[reason] = int(total)

    def balance(self, account: str) -> int:
        """The projected balance of ``account``."""
        return self._balances.get(account, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every non-zero balance."""
        return {k: v for k, v in self._balances.items() if v}

    def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        return self._by_reason.get(reason, 0)

    def apply(self, moves: list[Move], *, allow_negative: frozenset[str]) -> None:
        """Check every account first, then apply all or nothing."""
        delta: defaultdict[str, int] = defaultdict(int)
        for m in moves:
            if not isinstance(m.amount, int) or isinstance(m.amount, bool) or m.amount <= 0:
                raise InvalidArgumentError("amount: must be a positive integer", field="amount")
            delta[m.debit] -= m.amount
            delta[m.credit] += m.amount
        for account, d in delta.items():
            have = self._balances.get(account, 0)
            if d < 0 and account not in allow_negative and have + d < 0:
                raise PaymentRequiredError(
                    f"not enough credits: {account.split(':', 1)[0]} balance {have}, needs {-d}"
                )
        for account, d in delta.items():
            self._balances[account] += d
        for m in moves:
            self._by_reason[m.reason] += m.amount

    def revert(self, moves: Iterable[Move]) -> None:
        """Undo ``moves``."""
        for m in moves:
            self._balances[m.debit] += m.amount
            self._balances[m.credit] -= m.amount
            self._by_reason[m.reason] -= m.amount
