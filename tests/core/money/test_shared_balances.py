"""Balances several cores share: the store refuses an overdraft, whoever admits the spend, and balances
are read from the store (system accounts summed from the ledger, no row everyone updates)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.errors import PaymentRequiredError
from core.money.balances import SharedBalances
from core.money.ledger import ESCROW, MINT, TREASURY, Ledger, Move
from core.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(30)


async def test_the_store_refuses_overdrafts_exactly(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", synchronous="NORMAL")
    await store.open()
    try:
        # Two ledgers on one store, as two cores would be: neither holds a projection.
        a, b = Ledger(store, SharedBalances(store)), Ledger(store, SharedBalances(store))
        await a.load()
        await b.load()
        await a.commit([Move(MINT, "user:u", 10, "grant")])
        spends = [
            (a if i % 2 else b).commit([Move("user:u", ESCROW, 1, "charge", f"job_{i}")]) for i in range(30)
        ]
        results = await asyncio.gather(*spends, return_exceptions=True)
        assert sum(r is None for r in results) == 10
        assert all(isinstance(r, PaymentRequiredError) for r in results if r is not None)
        assert await a.balance("user:u") == 0 and await b.balance(ESCROW) == 10
        assert await a.balance(MINT) == -10
        with pytest.raises(PaymentRequiredError):
            await a.commit([Move("user:never-credited", TREASURY, 1, "x")])
        snapshot = await b.balances.snapshot()
        assert sum(snapshot.values()) == 0 and snapshot[ESCROW] == 10
        assert await b.total("charge") == 10
    finally:
        await store.close()
