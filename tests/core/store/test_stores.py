"""What every store does, on both engines: group commits that isolate a bad unit, durability across a
reopen, migrations applied once, constraint errors told apart, numbers read back as SQLite returns
them, and many concurrent units all resolved."""

from __future__ import annotations

import asyncio

import pytest

from core.jobs.repository import JobRepository
from core.money.balances import MemoryBalances
from core.store import ConstraintError, Statement, StoreError
from core.store.schema import LATEST
from tests.core.store.conftest import Engine

pytestmark = pytest.mark.timeout(60)


def conversation(cid: str) -> Statement:
    return ("INSERT INTO conversations (id, owner, created_at) VALUES (?, 'o', 0)", (cid,))


def message(cid: str, content: str = "hi") -> Statement:
    return (
        "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?, 'user', ?, '', 0)",
        (cid, content),
    )


def ledger(amount: int, reason: str = "grant", debit: str = "mint", credit: str = "user:a") -> Statement:
    return (
        "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,'',0)",
        (debit, credit, amount, reason),
    )


async def test_group_commit_batches_isolates_a_bad_unit_and_is_durable(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    try:
        ok = [store.write([conversation(f"conv_{i:010d}")]) for i in range(300)]
        bad = store.write([conversation("conv_dup"), conversation("conv_dup")])
        results = await asyncio.gather(*ok, bad, return_exceptions=True)
        assert all(r is None for r in results[:-1])
        assert isinstance(results[-1], StoreError)
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (300,)
        assert store.batches < 300  # many writes share a commit
    finally:
        await store.close()
    again = engine.make()  # durable: a new store on the same database sees everything acknowledged
    await again.open()
    try:
        assert await again.fetchone("SELECT COUNT(*) FROM conversations") == (300,)
    finally:
        await again.close()


async def test_units_after_a_refused_one_see_the_units_before_it(engine: Engine) -> None:
    """Isolating a bad unit keeps the order of the others: a later unit may depend on an earlier one."""
    store = engine.make()
    await store.open()
    try:
        first = store.submit([conversation("conv_a")])
        bad = store.submit([conversation("conv_b"), message("conv_missing")])
        later = store.submit([message("conv_a", "after"), conversation("conv_c")])
        results = await asyncio.gather(first, bad, later, return_exceptions=True)
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], ConstraintError)
        rows = await store.fetchall("SELECT id FROM conversations ORDER BY id")
        assert rows == [("conv_a",), ("conv_c",)]
        assert await store.fetchall("SELECT content FROM messages") == [("after",)]
    finally:
        await store.close()


async def test_constraint_violations_are_constraint_errors(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    try:
        await store.write([conversation("conv_1")])
        with pytest.raises(ConstraintError):  # a key already used
            await store.write([conversation("conv_1")])
        with pytest.raises(ConstraintError):  # CHECK (amount > 0)
            await store.write([ledger(0)])
        with pytest.raises(ConstraintError):  # a foreign key to nothing
            await store.write([message("conv_nobody")])
        with pytest.raises(StoreError) as caught:  # not a constraint: retrying might help
            await store.write([("INSERT INTO no_such_table (x) VALUES (?)", (1,))])
        assert not isinstance(caught.value, ConstraintError)
        # nothing of a refused unit was written
        with pytest.raises(ConstraintError):
            await store.write([conversation("conv_2"), conversation("conv_1")])
        assert await store.fetchall("SELECT id FROM conversations") == [("conv_1",)]
    finally:
        await store.close()


async def test_migrations_run_once(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    await store.close()
    again = engine.make()
    await again.open()
    try:
        rows = await again.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert rows == [(v,) for v in range(1, LATEST + 1)]
    finally:
        await again.close()


async def test_numbers_read_back_as_sqlite_returns_them(engine: Engine) -> None:
    """SUM and COUNT are ints (PostgreSQL's SUM over BIGINT is NUMERIC), AVG a float, text is str."""
    store = engine.make()
    await store.open()
    try:
        assert await store.fetchone("SELECT SUM(amount), COUNT(*), MAX(amount) FROM ledger") == (
            None,
            0,
            None,
        )
        await store.write([ledger(2), ledger(3, "burn"), ledger(10**15, credit="user:b")])
        total, count, biggest, mean, reason = await store.fetchone(  # type: ignore[misc]
            "SELECT SUM(amount), COUNT(*), MAX(amount), AVG(amount), MIN(reason) FROM ledger"
        )
        assert (total, count, biggest, reason) == (10**15 + 5, 3, 10**15, "burn")
        assert all(type(v) is int for v in (total, count, biggest))
        assert type(mean) is float
        # the core's own reads of sums and counts
        balances = MemoryBalances()
        await balances.load(store)
        assert await balances.balance("user:a") == 5 and await balances.balance("mint") == -(10**15 + 5)
        assert await balances.total("grant") == 10**15 + 2
        assert await JobRepository(store).completed_count() == 0
        row = await store.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE reason = 'staking_reward' AND credit = ?",
            ("user:a",),
        )
        assert row == (0,) and type(row[0]) is int
    finally:
        await store.close()


async def test_placeholders_inside_literals_are_left_alone(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    try:
        await store.write(
            [("INSERT INTO conversations (id, owner, created_at) VALUES ('what?', ?, ?)", ("o?", 1))]
        )
        row = await store.fetchone(
            "SELECT id, owner FROM conversations WHERE id = 'what?' AND owner = ? -- really?\n AND created_at = ?",
            ("o?", 1),
        )
        assert row == ("what?", "o?")
    finally:
        await store.close()


async def test_many_concurrent_units_all_resolve(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    try:
        units = 2000

        async def one(i: int) -> None:
            cid = f"conv_{i:06d}"
            await store.write([conversation(cid), message(cid), message(cid, "again")])

        await asyncio.gather(*(one(i) for i in range(units)))
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (units,)
        assert await store.fetchone("SELECT COUNT(*) FROM messages") == (2 * units,)
        assert store.batches < units
    finally:
        await store.close()


async def test_close_commits_what_is_queued(engine: Engine) -> None:
    store = engine.make()
    await store.open()
    futures = [store.submit([conversation(f"conv_{i}")]) for i in range(100)]
    await store.close()
    assert all(f.done() and f.exception() is None for f in futures)
    again = engine.make()
    await again.open()
    try:
        assert await again.fetchone("SELECT COUNT(*) FROM conversations") == (100,)
    finally:
        await again.close()
