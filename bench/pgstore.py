"""Group commits on PostgreSQL: units/s for 6-statement units, by how the store runs them.

One ``PostgresStore`` in this process (on uvloop, as the core runs) against the PostgreSQL server at
``ASHAO_BENCH_POSTGRES_DSN`` (default: the local ``postgres`` database), each mode in a database of
its own created for the run and dropped after. Closed-loop writers each ``await write(unit)`` and go
again. A unit is what a priced send that settles at once writes: a conversation, a message, a job and
three ledger rows (the ledger rows are consecutive statements of one SQL text).

- ``per_unit``: one transaction per unit (``max_batch=1``): what a store without group commits does.
- ``batched``: group commits, one ``execute`` per statement.
- ``batched_executemany``: group commits, a run of statements of one SQL text as one ``executemany``
  (the default).
- ``ledger_only_*``: units of 6 ledger rows (the whole batch is one run): executemany's best case.
- ``bad_unit_*``: 1 unit in 25 breaks a unique key; the batch is redone with a savepoint per unit (the
  default) or one transaction per unit.
The SQLite store on a temporary file (synchronous=FULL) runs the same units for reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg

from bench.common import run_async
from core.store import Statement, Store, StoreError
from core.store.pgwriter import Pending
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.helpers.postgres import DEFAULT_DSN, fresh_database

_ids = itertools.count()


def _send_unit() -> list[Statement]:
    n = next(_ids)
    cid, jid = f"conv_{n:012d}", f"job_{n:012d}"
    ledger = "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,?,?)"
    return [
        ("INSERT INTO conversations (id, owner, created_at) VALUES (?, ?, ?)", (cid, "usr_bench", n)),
        (
            "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?,?,?,?,?)",
            (cid, "user", "hello there", jid, n),
        ),
        (
            "INSERT INTO jobs (id, tier, model, conversation_id, owner, state, max_tokens, cost, payer,"
            " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (jid, "basic", "ashao-basic", cid, "usr_bench", "queued", 512, 10, "usr_bench", n, n),
        ),
        (ledger, ("user:usr_bench", "escrow", 10, "charge", jid, n)),
        (ledger, ("escrow", "worker:wrk_bench", 7, "payout_worker", jid, n)),
        (ledger, ("escrow", "treasury", 3, "treasury_share", jid, n)),
    ]


def _ledger_unit() -> list[Statement]:
    n = next(_ids)
    sql = "INSERT INTO ledger (debit, credit, amount, reason, ref, created_at) VALUES (?,?,?,?,?,?)"
    return [(sql, ("mint", f"user:{i}", 1 + i, "grant", f"g{n}", n)) for i in range(6)]


_bad = itertools.count()


def _sometimes_bad_unit() -> list[Statement]:
    unit = _send_unit()
    if next(_bad) % 25 == 0:
        unit[0] = ("INSERT INTO conversations (id, owner, created_at) VALUES (?, ?, ?)", ("conv_dup", "o", 0))
    return unit


class _RedoStore(PostgresStore):
    """The alternative to savepoints, for comparison: redo each unit of a failed batch in a
    transaction of its own."""

    async def _isolate(self, conn: asyncpg.Connection, batch: list[Pending]) -> None:
        for item in batch:
            try:
                await conn.execute("BEGIN")
                await self._execute(conn, [item])
                await conn.execute("COMMIT")
            except asyncpg.PostgresError as exc:
                await conn.execute("ROLLBACK")
                self._settle([], [(item, exc)])
            else:
                self._settle([item], [])


async def _drive(
    store: Store, unit: Callable[[], Sequence[Statement]], clients: int, seconds: float
) -> tuple[float, int]:
    """(units/s, units per group commit) over ``seconds``."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            with contextlib.suppress(StoreError):
                await store.write(unit())
            done += 1

    batches = store.batches
    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(clients)))
    return done / (time.perf_counter() - t0), done // max(1, store.batches - batches)


async def _open(store: Store, unit: Callable[[], Sequence[Statement]], clients: int) -> Store:
    await store.open()
    await store.write([("INSERT INTO conversations (id, owner, created_at) VALUES ('conv_dup', 'o', 0)", ())])
    await asyncio.gather(*(store.write(unit()) for _ in range(clients)), return_exceptions=True)  # warm-up
    return store


async def _run(admin: str, clients: int, seconds: float, rounds: int) -> dict[str, float]:
    modes: dict[str, tuple[Callable[[str], Store], Callable[[], Sequence[Statement]]]] = {
        "per_unit": (lambda d: PostgresStore(d, max_batch=1, executemany=False), _send_unit),
        "batched": (lambda d: PostgresStore(d, executemany=False), _send_unit),
        "batched_executemany": (lambda d: PostgresStore(d), _send_unit),
        "ledger_only_batched": (lambda d: PostgresStore(d, executemany=False), _ledger_unit),
        "ledger_only_executemany": (lambda d: PostgresStore(d), _ledger_unit),
        "bad_unit_savepoints": (lambda d: PostgresStore(d), _sometimes_bad_unit),
        "bad_unit_redo": (lambda d: _RedoStore(d), _sometimes_bad_unit),
    }
    figures: dict[str, float] = {}
    conn = await asyncpg.connect(admin)
    for setting in ("synchronous_commit", "fsync"):
        figures[f"server_{setting}_on"] = float(await conn.fetchval(f"SHOW {setting}") == "on")
    await conn.close()
    rates: dict[str, list[float]] = {name: [] for name in [*modes, "sqlite_batched"]}
    per_batch: dict[str, list[int]] = {name: [] for name in rates}
    async with contextlib.AsyncExitStack() as stack:
        stores: dict[str, tuple[Store, Callable[[], Sequence[Statement]]]] = {}
        for name, (make, unit) in modes.items():
            dsn = await stack.enter_async_context(fresh_database(admin))
            stores[name] = (await _open(make(dsn), unit, clients), unit)
            stack.push_async_callback(stores[name][0].close)
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ashao-bench-"))
        sqlite = SqliteStore(Path(tmp) / "b.db", synchronous="FULL")
        stores["sqlite_batched"] = (await _open(sqlite, _send_unit, clients), _send_unit)
        stack.push_async_callback(sqlite.close)
        for _ in range(rounds):  # alternating, so that every mode sees the same machine conditions
            for name, (store, unit) in stores.items():
                rate, units_per_batch = await _drive(store, unit, clients, seconds)
                rates[name].append(rate)
                per_batch[name].append(units_per_batch)
    # Ratios within a round first: both sides of each saw the same machine (shared, it drifts).
    for a, b in (
        ("batched", "per_unit"),
        ("batched_executemany", "batched"),
        ("ledger_only_executemany", "ledger_only_batched"),
        ("bad_unit_savepoints", "bad_unit_redo"),
    ):
        figures[f"ratio_{a}_over_{b}"] = statistics.median(
            x / y for x, y in zip(rates[a], rates[b], strict=True)
        )
    for name in rates:
        figures[f"{name}_units_per_s"] = statistics.median(rates[name])
        figures[f"{name}_units_per_s_min"] = min(rates[name])
        figures[f"{name}_units_per_s_max"] = max(rates[name])
        figures[f"{name}_units_per_batch"] = statistics.median(per_batch[name])
    return figures


def run(clients: int = 256, seconds: float = 1.5, rounds: int = 5) -> dict[str, float]:
    """Every mode for ``seconds`` with ``clients`` closed-loop writers, in ``rounds`` alternating rounds;
    medians (and the range) over the rounds."""
    admin = os.environ.get("ASHAO_BENCH_POSTGRES_DSN") or DEFAULT_DSN
    logging.getLogger("ashao.core.store").setLevel(logging.ERROR)  # the refused units are on purpose
    return run_async(_run(admin, clients, seconds, rounds))
