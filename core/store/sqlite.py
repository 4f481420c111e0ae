"""The SQLite store (the embedded default): one writer thread doing group commits, one reader thread.

Writes from many coroutines are gathered into one transaction per batch (one thread hop per batch,
never per statement) and each caller's future resolves only after the batch has committed, so an
acknowledged write is durable. Reads run on a separate connection (WAL lets them proceed while the
writer commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ashao_common.metrics import Histogram
from core.store import schema
from core.store.base import ConstraintError, Statement, StoreError

log = logging.getLogger("ashao.core.store")

T = TypeVar("T")


class _Pending:
    __slots__ = ("future", "statements")

    def __init__(self, statements: Sequence[Statement], future: asyncio.Future[None]) -> None:
        self.statements = statements
        self.future = future


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open ``path`` in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply the migrations ``conn``'s database lacks, each in one transaction; returns those applied."""
    conn.execute(schema.VERSION_TABLE)
    done = {v for (v,) in conn.execute("SELECT version FROM schema_version")}
    applied = []
    for version, _ in schema.MIGRATIONS:
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in schema.statements(version, "sqlite"):
                conn.execute(sql)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, int(time.time() * 1000)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


class SqliteStore:
    """Group-committing SQLite store. ``await write(...)`` returns once the batch has committed."""

    dialect = "sqlite"

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
        self.commit_seconds = Histogram()
        """How long each group commit took (BEGIN → COMMIT durable), on the writer thread."""

    async def open(self) -> None:
        """Bring the schema up to date and start the writer thread. The file is the owner's alone."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        write_conn = await asyncio.to_thread(self._open_writer)
        self._read_conn = await self._loop.run_in_executor(
            self._reader, lambda: connect(self._path, synchronous=self._synchronous)
        )
        self._thread = threading.Thread(
            target=self._writer, args=(write_conn,), name="ashao-store-write", daemon=True
        )
        self._thread.start()

    def _open_writer(self) -> sqlite3.Connection:
        if not self._path.exists():
            # Created owner-only before SQLite opens it: it holds sessions, keys' hashes and money.
            os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = connect(self._path, synchronous=self._synchronous)
        applied = migrate(conn)
        if applied:
            log.info("store %s: applied schema migrations %s", self._path.name, applied)
        return conn

    async def close(self) -> None:
        """Commit what is queued, then stop both threads. Idempotent."""
        if self._closing:
            return
        with self._lock:  # the writer clears its wake-up under this lock: the last one is not lost
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
                    if not self._queue and not self._closing:
                        self._wake.clear()
                if not batch:
                    if self._closing:
                        return
                    continue
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        started = time.perf_counter()
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
            self.commit_seconds.observe(time.perf_counter() - started)
            return
        self.commit_seconds.observe(time.perf_counter() - started)
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
                    kind = ConstraintError if isinstance(exc, sqlite3.IntegrityError) else StoreError
                    item.future.set_exception(kind(str(exc)))

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
