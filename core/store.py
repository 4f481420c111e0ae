"""The SQLite store: one writer thread doing group commits, one reader thread.

Writes from many coroutines are gathered into one transaction per batch (one thread hop per batch,
never per statement) and each caller's future resolves only after the batch has committed, so an
acknowledged write is durable. Reads run on a separate connection (WAL lets them proceed while the
writer commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("ashao.core.store")

T = TypeVar("T")

Statement = tuple[str, Sequence[Any]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    job_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT NOT NULL DEFAULT '',
    tokens INTEGER NOT NULL DEFAULT 0,
    output TEXT,
    error TEXT NOT NULL DEFAULT '',
    max_tokens INTEGER NOT NULL,
    cost INTEGER NOT NULL DEFAULT 0,
    payer TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created_at);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    tiers TEXT NOT NULL,
    slots INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    jobs_completed INTEGER NOT NULL DEFAULT 0,
    tokens_generated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0
);
-- The double-entry ledger (see core/ledger.py): rows are only ever appended.
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    reason TEXT NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_ref ON ledger(ref);
CREATE TABLE IF NOT EXISTS settlements (
    job_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL CHECK (outcome IN ('paid', 'refunded')),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    prompt TEXT NOT NULL,
    style TEXT NOT NULL,
    aspect TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- The safety ledger (see core/safety.py): append-only, hash-chained verdicts.
CREATE TABLE IF NOT EXISTS safety_ledger (
    state_height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    stage TEXT NOT NULL,
    verdict TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (state_height, idx)
);
CREATE TABLE IF NOT EXISTS treasury_snapshots (
    at INTEGER PRIMARY KEY,
    balance INTEGER NOT NULL,
    total_burned INTEGER NOT NULL,
    rewards_paid INTEGER NOT NULL,
    circulating_supply INTEGER NOT NULL,
    price REAL NOT NULL
);
"""


class StoreError(Exception):
    """The store could not carry out a write or read."""


class _Pending:
    __slots__ = ("future", "statements")

    def __init__(self, statements: Sequence[Statement], future: asyncio.Future[None]) -> None:
        self.statements = statements
        self.future = future


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the schema in place."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    return conn


class Store:
    """Group-committing SQLite store. ``await write(...)`` returns once the batch has committed."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", max_batch: int = 512) -> None:
        self._path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ashao-store-read")
        self._read_conn: sqlite3.Connection | None = None
        self.batches = 0
        self.statements = 0

    async def open(self) -> None:
        """Create the schema and start the writer thread."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        write_conn = await asyncio.to_thread(connect, self._path, synchronous=self._synchronous)
        self._read_conn = await self._loop.run_in_executor(
            self._reader, lambda: connect(self._path, synchronous=self._synchronous)
        )
        self._thread = threading.Thread(
            target=self._writer, args=(write_conn,), name="ashao-store-write", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Commit what is queued, then stop both threads. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._read_conn is not None:
            conn = self._read_conn
            self._read_conn = None
            await asyncio.get_running_loop().run_in_executor(self._reader, conn.close)
        self._reader.shutdown(wait=True)

    # -- writes ----------------------------------------------------------------------------

    def submit(self, statements: Sequence[Statement]) -> asyncio.Future[None]:
        """Queue ``statements`` as one atomic unit; the future resolves when they are durable."""
        if self._closing:
            raise StoreError("store is closed")
        assert self._loop is not None, "store not open"
        future: asyncio.Future[None] = self._loop.create_future()
        with self._lock:
            self._queue.append(_Pending(statements, future))
        self._wake.set()
        return future

    async def write(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` atomically in the next group commit and wait until it is durable."""
        await self.submit(statements)

    def _writer(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                self._wake.wait()
                with self._lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    if not self._queue:
                        self._wake.clear()
                if not batch:
                    if self._closing:
                        return
                    continue
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                _run(conn, item.statements)
            conn.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            # One bad unit must not fail the others of its batch: redo them one transaction each.
            self._commit_one_by_one(conn, batch)
            return
        self.batches += 1
        self.statements += sum(len(item.statements) for item in batch)
        self._resolve([], batch)

    def _commit_one_by_one(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        failed: list[tuple[_Pending, BaseException]] = []
        ok: list[_Pending] = []
        for item in batch:
            try:
                conn.execute("BEGIN IMMEDIATE")
                _run(conn, item.statements)
                conn.execute("COMMIT")
                ok.append(item)
            except sqlite3.Error as exc:
                log.warning("write refused by the store: %s", exc)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                failed.append((item, exc))
        self.batches += 1
        self._resolve(failed, ok)

    def _resolve(self, failed: list[tuple[_Pending, BaseException]], ok: list[_Pending]) -> None:
        loop = self._loop
        assert loop is not None

        def settle() -> None:
            for item in ok:
                if not item.future.done():
                    item.future.set_result(None)
            for item, exc in failed:
                if not item.future.done():
                    item.future.set_exception(StoreError(str(exc)))

        with contextlib.suppress(RuntimeError):  # loop already closed during shutdown
            loop.call_soon_threadsafe(settle)

    # -- reads -----------------------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the reader thread."""
        conn = self._read_conn
        if conn is None:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, conn)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query."""
        return await self.read(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or None."""
        row: tuple[Any, ...] | None = await self.read(lambda c: c.execute(sql, params).fetchone())
        return row


def _run(conn: sqlite3.Connection, statements: Iterable[Statement]) -> None:
    for sql, params in statements:
        conn.execute(sql, params)


def now_ms() -> int:
    """Wall-clock time in Unix milliseconds, as stored."""
    return int(time.time() * 1000)
