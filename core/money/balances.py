"""The balances seam: what admission checks a spend against, and how balances are read.

Every account that must never go below zero (``user:``, ``stake:``, ``worker:``) has a row in
``account_balances``, changed in the same unit as the ledger rows that move it, under a
``CHECK (balance >= 0)``: the store itself refuses an overdraft (``ConstraintError``). System accounts
(mint, escrow, treasury, burn) have no row — every priced job touches escrow, and a row everyone
updates is the hot spot that gave other gateways multi-second tails — they are summed from the
append-only ledger when read.

Two implementations:

- ``MemoryBalances`` (one core, the embedded default): the projection of every balance in memory,
  rebuilt at start. A spend is checked and applied at once (so two concurrent sends cannot spend the
  same credits), before any await, and undone if its unit fails to commit. Reads are memory reads.
- ``SharedBalances`` (several cores on one PostgreSQL): no projection that could disagree between
  cores; the guarded rows are the check, at commit time, and reads go to the store.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from core.errors import InvalidArgumentError, PaymentRequiredError
from core.store import Statement, Store

MINT = "mint"
"""The issuer: its balance is minus everything minted, so all balances always sum to zero."""
GUARDED = ("user:", "stake:", "worker:")
"""Prefixes of the accounts that have a guarded balance row."""


@dataclass(frozen=True, slots=True)
class Move:
    """One ledger row: ``amount`` leaves ``debit`` and enters ``credit``."""

    debit: str
    credit: str
    amount: int
    reason: str
    ref: str = ""


def guarded(account: str) -> bool:
    """Whether ``account`` has a balance row the store guards."""
    return account.startswith(GUARDED)


def deltas(moves: Iterable[Move]) -> dict[str, int]:
    """Net change per account; refuses a move that is not a positive integer."""
    delta: defaultdict[str, int] = defaultdict(int)
    for m in moves:
        if not isinstance(m.amount, int) or isinstance(m.amount, bool) or m.amount <= 0:
            raise InvalidArgumentError("amount: must be a positive integer", field="amount")
        delta[m.debit] -= m.amount
        delta[m.credit] += m.amount
    return delta


def balance_rows(delta: dict[str, int]) -> list[Statement]:
    """The guarded rows' changes: a credit adds to the row (creating it); a debit makes sure the row
    exists (at 0) and then takes from it, so the CHECK refuses the unit if the balance would go below
    zero. (Both engines check a row proposed for insertion before resolving a conflict, so a debit
    cannot be an upsert of a negative amount.)"""
    rows: list[Statement] = []
    for account, d in sorted(delta.items()):
        if not d or not guarded(account):
            continue
        if d > 0:
            rows.append(
                (
                    "INSERT INTO account_balances (account, balance) VALUES (?, ?)"
                    " ON CONFLICT (account) DO UPDATE SET balance = account_balances.balance + excluded.balance",
                    (account, d),
                )
            )
        else:
            rows.append(
                (
                    "INSERT INTO account_balances (account, balance) VALUES (?, 0) ON CONFLICT (account) DO NOTHING",
                    (account,),
                )
            )
            rows.append(("UPDATE account_balances SET balance = balance + ? WHERE account = ?", (d, account)))
    return rows


_SUM_ONE = (
    "SELECT COALESCE((SELECT SUM(amount) FROM ledger WHERE credit = ?), 0)"
    " - COALESCE((SELECT SUM(amount) FROM ledger WHERE debit = ?), 0)"
)
_SUM_ALL = (
    "SELECT account, SUM(delta) FROM ("
    " SELECT credit AS account, amount AS delta FROM ledger"
    " UNION ALL SELECT debit AS account, -amount AS delta FROM ledger"
    ") t GROUP BY account"
)


class Balances(Protocol):
    """Balances per account, and totals per reason."""

    async def load(self, store: Store) -> None:
        """Get ready to answer (a projection rebuilds from the ledger)."""
        ...

    def reserve(self, moves: list[Move], *, allow_negative: frozenset[str]) -> list[Statement]:
        """The statements that apply ``moves`` to the balances in the caller's unit; may refuse at once
        (PAYMENT_REQUIRED) what it can tell would overdraw an account outside ``allow_negative``."""
        ...

    def undo(self, moves: Iterable[Move]) -> None:
        """The unit carrying ``reserve``'s statements did not commit."""
        ...

    async def balance(self, account: str) -> int:
        """The balance of ``account`` now."""
        ...

    async def snapshot(self) -> dict[str, int]:
        """Every non-zero balance."""
        ...

    async def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        ...


class MemoryBalances:
    """The projection of this process, in memory (the embedded default: one core)."""

    def __init__(self) -> None:
        self._balances: defaultdict[str, int] = defaultdict(int)
        self._by_reason: defaultdict[str, int] = defaultdict(int)

    async def load(self, store: Store) -> None:
        """Sum every row per account and per reason."""
        self._balances.clear()
        self._by_reason.clear()
        for account, total in await store.fetchall(_SUM_ALL):
            self._balances[account] = int(total)
        for reason, total in await store.fetchall("SELECT reason, SUM(amount) FROM ledger GROUP BY reason"):
            self._by_reason[reason] = int(total)

    def reserve(self, moves: list[Move], *, allow_negative: frozenset[str]) -> list[Statement]:
        """Check every account first, then apply all or nothing, in memory and in the unit."""
        delta = deltas(moves)
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
        return balance_rows(delta)

    def undo(self, moves: Iterable[Move]) -> None:
        """Undo ``moves``."""
        for m in moves:
            self._balances[m.debit] += m.amount
            self._balances[m.credit] -= m.amount
            self._by_reason[m.reason] -= m.amount

    def projected(self, account: str) -> int:
        """The balance of ``account`` in memory, without waiting."""
        return self._balances.get(account, 0)

    def projection(self) -> dict[str, int]:
        """Every non-zero balance in memory, without waiting."""
        return {k: v for k, v in self._balances.items() if v}

    async def balance(self, account: str) -> int:
        """The projected balance of ``account``."""
        return self._balances.get(account, 0)

    async def snapshot(self) -> dict[str, int]:
        """A copy of every non-zero balance."""
        return {k: v for k, v in self._balances.items() if v}

    async def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        return self._by_reason.get(reason, 0)


class SharedBalances:
    """Balances read from the store that several cores share; the guarded rows refuse overdrafts."""

    SUMS_TTL_S = 1.0
    """How long a sum over the ledger (a system account, a reason's total) is reused: such reads are
    scans, and pages poll them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sums: dict[tuple[str, str], tuple[float, int]] = {}

    async def load(self, store: Store) -> None:
        """Nothing to rebuild: every read goes to the store."""

    async def _sum(self, kind: str, key: str, sql: str, params: tuple[str, ...]) -> int:
        now = time.monotonic()
        cached = self._sums.get((kind, key))
        if cached is not None and now - cached[0] < self.SUMS_TTL_S:
            return cached[1]
        row = await self._store.fetchone(sql, params)
        value = int(row[0]) if row and row[0] is not None else 0
        if len(self._sums) > 1024:
            self._sums.clear()
        self._sums[(kind, key)] = (now, value)
        return value

    def reserve(self, moves: list[Move], *, allow_negative: frozenset[str]) -> list[Statement]:
        """The guarded rows' changes; the store refuses the unit if one would go below zero."""
        return balance_rows(deltas(moves))

    def undo(self, moves: Iterable[Move]) -> None:
        """Nothing was applied anywhere but in the unit that failed."""

    async def balance(self, account: str) -> int:
        """A guarded account's row, or a system account summed from the ledger."""
        if guarded(account):
            row = await self._store.fetchone(
                "SELECT balance FROM account_balances WHERE account = ?", (account,)
            )
            return int(row[0]) if row else 0
        return await self._sum("account", account, _SUM_ONE, (account, account))

    async def snapshot(self) -> dict[str, int]:
        """Every non-zero balance, summed from the ledger."""
        return {a: int(t) for a, t in await self._store.fetchall(_SUM_ALL) if t}

    async def total(self, reason: str) -> int:
        """Everything ever moved for ``reason``."""
        return await self._sum(
            "reason", reason, "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE reason = ?", (reason,)
        )
