"""The PostgreSQL store's own concerns: placeholders, cores starting at once, executemany keeping order,
and what happens while the server is unreachable (through a proxy the test cuts and restores)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.store import ConstraintError, Statement, StoreError, schema
from core.store.pgsql import number_from_text, numbered
from core.store.postgres import PostgresStore
from core.store.schema import LATEST
from tests.core.store.test_stores import conversation, message
from tests.helpers.postgres import address, with_address
from tests.helpers.tcpproxy import TcpProxy
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


def test_placeholders_are_numbered_outside_literals_identifiers_and_comments() -> None:
    assert (
        numbered("SELECT a FROM t WHERE b = ? AND c IN (?,?)")
        == "SELECT a FROM t WHERE b = $1 AND c IN ($2,$3)"
    )
    assert (
        numbered("SELECT 'it''s ?', \"col?\" FROM t WHERE x = ?")
        == "SELECT 'it''s ?', \"col?\" FROM t WHERE x = $1"
    )
    assert numbered("SELECT ? -- why?\n, ? /* and ? */, ?") == "SELECT $1 -- why?\n, $2 /* and ? */, $3"
    assert numbered("SELECT 1") == "SELECT 1"


def test_numeric_values_read_as_sqlite_returns_them() -> None:
    assert number_from_text("12345678901234567890") == 12345678901234567890
    assert number_from_text("-3") == -3
    assert number_from_text("2.5000000000000000") == 2.5
    assert number_from_text("NaN") != number_from_text("NaN")


async def test_cores_starting_at_once_run_each_migration_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        rows = await stores[0].fetchall("SELECT version FROM schema_version ORDER BY version")
        assert rows == [(v,) for v in range(1, LATEST + 1)]
        # and they share the data: what each writes, every other reads
        await asyncio.gather(
            *(
                s.write([conversation(f"conv_{i}_{n}"), message(f"conv_{i}_{n}")])
                for i, s in enumerate(stores)
                for n in range(250)
            )
        )
        for s in stores:
            assert await s.fetchone("SELECT COUNT(*), COUNT(DISTINCT conversation_id) FROM messages") == (
                1000,
                1000,
            )
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_later_migrations_apply_to_a_database_with_rows(postgres_dsn: str) -> None:
    """A database left at version 1 by an older release: ADD COLUMN with defaults fills existing rows."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(schema.VERSION_TABLE)
        for sql in schema.statements(1, "postgresql"):
            await conn.execute(sql)
        await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (1, 0)")
        await conn.execute(
            "INSERT INTO workers (id, name, token_hash, tiers, slots, created_at, last_seen)"
            " VALUES ('wrk_1', 'w', 'h', 'free', 1, 0, 0)"
        )
    finally:
        await conn.close()
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        rows = await store.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert rows == [(v,) for v in range(1, LATEST + 1)]
        row = await store.fetchone("SELECT owner_address, join_token_id, revoked_at FROM workers")
        assert row == ("", "", 0)
    finally:
        await store.close()


@pytest.mark.parametrize("executemany", [True, False])
async def test_runs_of_one_statement_keep_order_and_isolation(postgres_dsn: str, executemany: bool) -> None:
    """Consecutive statements of one SQL text may travel as one executemany; a bad row in such a run
    still fails only its own unit, and statements of other kinds in between keep their place."""
    store = PostgresStore(postgres_dsn, executemany=executemany)
    await store.open()
    try:
        units: list[list[Statement]] = []
        for i in range(50):
            cid = f"conv_{i:03d}"
            units.append([conversation(cid), message(cid, "one"), message(cid, "two")])
        units[20] = [conversation("conv_x"), message("conv_missing")]  # its run of messages fails
        units[30] = [message("conv_010", "late")]  # depends on a unit earlier in the batch
        futures = [store.submit(u) for u in units]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert isinstance(results[20], ConstraintError)
        assert all(r is None for i, r in enumerate(results) if i != 20)
        assert store.batches == 1
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (48,)
        rows = await store.fetchall(
            "SELECT content FROM messages WHERE conversation_id = 'conv_010' ORDER BY id"
        )
        assert rows == [("one",), ("two",), ("late",)]
    finally:
        await store.close()


async def test_a_bad_unit_in_a_large_batch_fails_alone(postgres_dsn: str) -> None:
    """Isolation runs in several transactions past 64 savepoints; every other unit still commits."""
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        units = [[conversation(f"conv_{i:03d}")] for i in range(200)]
        units[150] = [conversation("conv_001")]
        results = await asyncio.gather(*(store.submit(u) for u in units), return_exceptions=True)
        assert [i for i, r in enumerate(results) if r is not None] == [150]
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (199,)
    finally:
        await store.close()


@pytest.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[TcpProxy]:
    p = TcpProxy(*address(postgres_dsn))
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def test_an_unreachable_server_fails_units_at_once_and_the_writer_reconnects(
    postgres_dsn: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(
        with_address(postgres_dsn, *proxy.address()), timeout_s=2.0, backoff_s=0.01, max_backoff_s=0.1
    )
    await store.open()
    try:
        await store.write([conversation("conv_before")])
        proxy.cut()
        with pytest.raises(StoreError):  # retried once on a new connection, which is refused too
            await store.write([conversation("conv_during")])
        refused = store.submit([conversation("conv_during_2")])
        assert refused.done() and isinstance(refused.exception(), StoreError)  # at once, nothing queued
        with pytest.raises(StoreError):
            await store.fetchone("SELECT COUNT(*) FROM conversations")
        proxy.restore()
        await eventually(lambda: store.connected)  # by itself, with no write asking for it
        await store.write([conversation("conv_after")])
        rows = await store.fetchall("SELECT id FROM conversations ORDER BY id")
        assert rows == [("conv_after",), ("conv_before",)]
    finally:
        await store.close()


async def test_a_silent_server_times_out_and_what_waits_is_bounded(
    postgres_dsn: str, proxy: TcpProxy
) -> None:
    store = PostgresStore(
        with_address(postgres_dsn, *proxy.address()),
        timeout_s=0.5,
        backoff_s=0.01,
        max_backoff_s=0.1,
        max_pending=20,
    )
    await store.open()
    try:
        await store.write([conversation("conv_before")])
        proxy.freeze()
        futures = [store.submit([conversation(f"conv_{i}")]) for i in range(25)]
        beyond = futures[20:]
        assert all(f.done() and isinstance(f.exception(), StoreError) for f in beyond)  # refused at once
        assert store.refused == 5
        results = await asyncio.gather(*futures[:20], return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results)  # within the timeout, not retried
        with pytest.raises(StoreError):
            await store.fetchone("SELECT 1")
        proxy.restore()
        await eventually(lambda: store.connected)
        await store.write([conversation("conv_after")])
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (2,)
    finally:
        await store.close()


async def test_a_dropped_idle_connection_costs_no_write(postgres_dsn: str, proxy: TcpProxy) -> None:
    """The server restarting (or a middlebox dropping an idle connection) between writes: the next
    unit is retried on a new connection, since nothing of it was written."""
    store = PostgresStore(with_address(postgres_dsn, *proxy.address()), timeout_s=5.0)
    await store.open()
    try:
        await store.write([conversation("conv_1")])
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (1,)
        proxy.cut()
        proxy.restore()
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (1,)  # reads too
        await store.write([conversation("conv_2")])
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (2,)
    finally:
        await store.close()


async def test_a_commit_whose_answer_was_lost_is_looked_up(postgres_dsn: str, proxy: TcpProxy) -> None:
    """The connection breaks after COMMIT was sent, before its answer: the next connection asks the
    server whether the transaction took, so the caller is told the truth (here: it did), not an error."""
    store = PostgresStore(with_address(postgres_dsn, *proxy.address()), timeout_s=5.0)
    await store.open()
    try:
        await store.write([conversation("conv_1")])
        proxy.lose_reply_to(b"COMMIT")
        await store.write([conversation("conv_2")])
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (2,)
        await store.write([conversation("conv_3")])  # and the writer goes on
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (3,)
    finally:
        await store.close()


async def test_open_fails_with_store_error_when_unreachable(postgres_dsn: str, proxy: TcpProxy) -> None:
    proxy.cut()
    store = PostgresStore(with_address(postgres_dsn, *proxy.address()), timeout_s=1.0)
    with pytest.raises(StoreError):
        await store.open()
    await store.close()
