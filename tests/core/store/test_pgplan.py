"""A group commit's statements as runs of one SQL text: what may move back to join an earlier run, and
that a batch so grouped leaves the database as its units one after another would (checked against the
SQLite store, which runs them in order)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from core.store import ConstraintError, Statement
from core.store.pgplan import footprint, runs
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(60)

CONV = "INSERT INTO conversations (id, owner, created_at) VALUES (?, 'o', 0)"
MSG = "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?, 'user', ?, '', 0)"
JOB = (
    "INSERT INTO jobs (id, tier, model, conversation_id, owner, state, max_tokens, created_at, updated_at)"
    " VALUES (?, 'free', 'm', ?, 'o', 'queued', 16, 0, 0)"
)
ASSIGN = "UPDATE jobs SET state='assigned', worker_id=? WHERE id=? AND state NOT IN ('done', 'failed')"
DONE = "UPDATE jobs SET state='done', output=? WHERE id=? AND state NOT IN ('done', 'failed')"
FAIL = "UPDATE jobs SET state='failed' WHERE id=? AND state NOT IN ('done', 'failed')"
CREDIT = (
    "INSERT INTO account_balances (account, balance) VALUES (?, ?)"
    " ON CONFLICT (account) DO UPDATE SET balance = account_balances.balance + excluded.balance"
)
ENSURE = "INSERT INTO account_balances (account, balance) VALUES (?, 0) ON CONFLICT (account) DO NOTHING"
DEBIT = "UPDATE account_balances SET balance = balance + ? WHERE account = ?"
LEDGER = "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,?,0)"


def texts(statements: list[Statement]) -> list[tuple[str, int]]:
    return [(text, len(rows)) for text, rows in runs(statements)]


def test_keys_are_read_from_the_schema_and_the_text() -> None:
    assert footprint(JOB).key == 0
    assert footprint(ASSIGN).key == 1
    assert footprint(DEBIT).key == 1
    assert footprint(ENSURE).key == 0
    assert footprint(LEDGER).key is None  # a serial key: inserts keep their order
    assert footprint(MSG).key is None
    assert footprint("INSERT INTO jobs (id, tier) VALUES (?, ?), (?, ?)").key is None  # two rows
    assert footprint("  INSERT INTO jobs (tier, id) VALUES ('free', ?)").key == 0
    # another unique column (token_hash): no row can be told apart by its key alone
    assert footprint("UPDATE workers SET last_seen = ? WHERE id = ?").key is None
    assert footprint("UPDATE jobs SET state = 'x' WHERE id = ? OR owner = ?").key is None
    assert footprint("UPDATE jobs SET id = ? WHERE id = ?").key is None
    assert footprint("DELETE FROM jobs WHERE id IN (SELECT job_id FROM settlements)").key is None
    assert footprint("SELECT pg_advisory_lock(1)").target == ""


def test_kinds_gather_where_rows_and_tables_allow() -> None:
    batch: list[Statement] = []
    for i in range(3):
        batch += [(CONV, (f"c{i}",)), (MSG, (f"c{i}", "q")), (JOB, (f"j{i}", f"c{i}"))]
        batch += [
            (ENSURE, (f"user:{i}",)),
            (DEBIT, (-1, f"user:{i}")),
            (LEDGER, (f"user:{i}", "escrow", 1, "r", "")),
        ]
        batch += [(ASSIGN, ("w", f"j{i}"))]
    assert texts(batch) == [(CONV, 3), (MSG, 3), (JOB, 3), (ENSURE, 3), (DEBIT, 3), (LEDGER, 3), (ASSIGN, 3)]


def test_one_row_written_twice_keeps_its_order() -> None:
    batch: list[Statement] = [
        (JOB, ("j1", "c1")),
        (ASSIGN, ("w", "j1")),
        (JOB, ("j2", "c1")),
        (DONE, ("x", "j1")),
        (ASSIGN, ("w", "j2")),
        (FAIL, ("j1",)),
    ]
    # j2's insert joins j1's; its assignment may not pass j1's end (other row) ... but does join j1's
    # assignment; j1's failure may not pass j1's end.
    assert texts(batch) == [(JOB, 2), (ASSIGN, 2), (DONE, 1), (FAIL, 1)]
    again: list[Statement] = [(ASSIGN, ("w", "j1")), (DONE, ("x", "j1")), (ASSIGN, ("v", "j1"))]
    assert texts(again) == [(ASSIGN, 1), (DONE, 1), (ASSIGN, 1)]


def test_a_child_row_never_passes_its_parents_table_and_serial_inserts_keep_order() -> None:
    batch: list[Statement] = [(MSG, ("c0", "a")), (CONV, ("c1",)), (MSG, ("c1", "b"))]
    # the second message may not move before the conversation insert it may depend on; the
    # conversation insert may move before the first message
    assert texts(batch) == [(MSG, 1), (CONV, 1), (MSG, 1)]
    ledger: list[Statement] = [
        (LEDGER, ("a", "b", 1, "r", "")),
        (CREDIT, ("user:a", 1)),
        (LEDGER, ("c", "d", 1, "r", "")),
    ]
    assert texts(ledger) == [(LEDGER, 2), (CREDIT, 1)]  # other tables: the ledger rows keep their order
    fence: list[Statement] = [(CONV, ("c1",)), ("SELECT pg_advisory_xact_lock(1)", ()), (CONV, ("c2",))]
    assert [n for _, n in texts(fence)] == [1, 1, 1]


def _units(seed: int, *, failing: bool) -> list[list[Statement]]:
    """Admissions, assignments, ends and failures of a few jobs, credits and debits of a few balances,
    in a random order that respects each job's own steps. ``failing``: some units overdraw a balance or
    refer to a missing conversation (refused: the batch is isolated unit by unit); else the batch
    commits as it was grouped."""
    rnd = random.Random(seed)
    units: list[list[Statement]] = [] if failing else [[(CREDIT, (f"user:u{i}", 1000)) for i in range(4)]]
    steps: dict[str, int] = {}
    for n in range(150):
        job = f"j{rnd.randrange(20)}"
        user = f"user:u{rnd.randrange(4)}"
        step = steps.get(job, 0)
        if step == 0:
            conv = f"c{n}"
            units.append(
                [
                    (CONV, (conv,)),
                    (MSG, (conv, f"q{n}")),
                    (JOB, (job, conv)),
                    (ENSURE, (user,)),
                    (DEBIT, (-1, user)),
                    (LEDGER, (user, "escrow", 1, "charge", job)),
                ]
            )
        elif rnd.random() < 0.3:
            units.append([(CREDIT, (user, rnd.randrange(1, 3))), (LEDGER, ("mint", user, 1, "grant", ""))])
            continue
        elif step == 1:
            units.append([(ASSIGN, (f"w{n}", job))])
        elif step == 2:
            end = (DONE, (f"out{n}", job)) if rnd.random() < 0.7 else (FAIL, (job,))
            units.append([end, (MSG, (f"c{n}", "orphan"))] if failing and rnd.random() < 0.05 else [end])
        else:
            units.append([(FAIL, (job,)), (DEBIT, (-rnd.randrange(1, 4), user))])
        steps[job] = step + 1
    return units


async def _apply(
    store: Any, units: list[list[Statement]]
) -> tuple[list[str], dict[str, list[tuple[Any, ...]]]]:
    results = await asyncio.gather(*(store.submit(u) for u in units), return_exceptions=True)
    outcome = ["ok" if r is None else type(r).__name__ for r in results]
    tables = {
        "jobs": "SELECT id, state, worker_id, output FROM jobs ORDER BY id",
        "balances": "SELECT account, balance FROM account_balances ORDER BY account",
        "messages": "SELECT conversation_id, content FROM messages ORDER BY id",
        "ledger": "SELECT debit, credit, amount, reason, ref FROM ledger ORDER BY id",
        "conversations": "SELECT id FROM conversations ORDER BY id",
    }
    return outcome, {name: [tuple(r) for r in await store.fetchall(sql)] for name, sql in tables.items()}


@pytest.mark.parametrize(("seed", "failing"), [(1, False), (2, False), (3, False), (4, True)])
async def test_a_grouped_batch_leaves_what_its_units_in_order_leave(
    postgres_dsn: str, tmp_path: Path, seed: int, failing: bool
) -> None:
    units = _units(seed, failing=failing)
    statements = [st for unit in units for st in unit]
    assert len(runs(statements)) < len(statements) / 4  # (the grouping has work to do)
    reference = SqliteStore(tmp_path / "ref.db")
    await reference.open()
    try:
        expected = await _apply(reference, units)
    finally:
        await reference.close()
    store = PostgresStore(postgres_dsn)
    await store.open()
    try:
        got = await _apply(store, units)
        assert store.batches == 1
    finally:
        await store.close()
    assert (ConstraintError.__name__ in expected[0]) == failing and "ok" in expected[0]
    assert got == expected
