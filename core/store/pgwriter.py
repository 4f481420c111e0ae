"""Group commits on one PostgreSQL connection: the write side of the PostgreSQL store.

Units submitted by many coroutines are gathered into one transaction per batch (at most ``max_batch``
units), and each caller's future resolves only after that transaction has committed. Within a batch,
statements of one SQL text go to the server as one ``executemany``, pipelined: one round trip instead of
one per statement. A statement is moved back to join an earlier run of its text only where no statement
in between could see the difference (``pgplan``: no table in common, or only other rows of it by primary
key; no foreign key between them), so a batch does what its units would have done one after another, in
a round trip or so per kind of statement.

One bad unit does not fail the others of its batch: the batch is rolled back and run again with a
savepoint before each unit, in transactions of at most ``_SAVEPOINTS`` units; a unit that fails is
rolled back to its savepoint and refused, the others commit together. That costs one round trip per
unit more, and only after a failure. Redoing the units one transaction each, as the SQLite store
does, costs a durable commit per unit instead (here ~0.3 ms of fsync more than a savepoint's round
trip; more on a remote disk or with a synchronous replica): ``python -m bench pgstore`` measured
savepoints 1.0-2x faster on that path on a shared 2-core machine.

When the server is unreachable, a batch fails within ``timeout_s`` and the writer reconnects by
itself with backoff; until it has, new units are refused at once, and so are units beyond
``max_pending`` waiting, so memory stays bounded while the database is down. A unit whose connection
broke before its COMMIT was sent is retried once on a new connection (nothing of it was written).
For a batch whose COMMIT went unanswered, the next connection asks the server (``txid_status``)
whether it took: only if that cannot be known (the server stays unreachable) does the caller get a
StoreError for a write that may have been made.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from ashao_common.metrics import Histogram
from core.store.base import ConstraintError, Statement, StoreError
from core.store.pgplan import runs
from core.store.pgsql import numbered

log = logging.getLogger("ashao.core.store")

_SAVEPOINTS = 64
"""Units per transaction when isolating a bad unit: PostgreSQL keeps 64 subtransactions per backend in
shared memory; past that every other session's snapshots get slower until the transaction ends."""


class Pending:
    """A unit waiting for its group commit."""

    __slots__ = ("future", "retried", "statements")

    def __init__(self, statements: Sequence[Statement], future: asyncio.Future[None]) -> None:
        self.statements = statements
        self.future = future
        self.retried = False


class _Broken(Exception):
    """The writer's connection failed (not a statement). ``in_doubt``: the units whose COMMIT was sent,
    in transaction ``xid``; the others of the batch were surely not written."""

    def __init__(
        self, cause: BaseException, *, in_doubt: Sequence[Pending] = (), xid: int | None = None
    ) -> None:
        super().__init__(why(cause))
        self.in_doubt = list(in_doubt)
        self.xid = xid


class GroupWriter(abc.ABC):
    """The writer task and its connection; ``_connect()`` is the subclass's."""

    def __init__(
        self,
        *,
        max_batch: int,
        max_pending: int,
        executemany: bool,
        timeout_s: float,
        backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._executemany = executemany
        self._timeout = timeout_s
        self._backoff = backoff_s
        self._max_backoff = max_backoff_s
        self._queue: list[Pending] = []
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._closing = False
        self._down: str | None = None
        self._in_doubt: list[tuple[int | None, list[Pending]]] = []
        self._conn: asyncpg.Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.statements = 0
        self.commit_seconds = Histogram()
        """How long each group commit took (BEGIN → COMMIT answered)."""
        self.statements = 0
        self.refused = 0
        """Units refused at once (database unreachable, or too many waiting)."""

    @property
    def connected(self) -> bool:
        """Whether the writer holds a working connection."""
        return self._conn is not None and not self._conn.is_closed()

    @abc.abstractmethod
    async def _connect(self) -> asyncpg.Connection:
        """A new connection for the writer (the store opens it as it opens its pool)."""

    def _start_writer(self, conn: asyncpg.Connection) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = conn
        self._writer = self._loop.create_task(self._write_loop(), name="ashao-store-write")

    async def _stop_writer(self) -> None:
        """Commit what is queued, stop the writer, close its connection."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        if self._writer is not None:
            await self._writer
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._close_connection(conn)

    async def _close_connection(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.close(timeout=self._timeout)
        except Exception:
            conn.terminate()

    def submit(self, statements: Sequence[Statement]) -> asyncio.Future[None]:
        """Queue ``statements`` as one atomic unit; the future resolves once they are committed. While
        the database is unreachable, or ``max_pending`` units are waiting, it fails at once."""
        if self._closing:
            raise StoreError("store is closed")
        assert self._loop is not None, "store not open"
        future: asyncio.Future[None] = self._loop.create_future()
        if self._down is not None:
            self.refused += 1
            future.set_exception(StoreError(self._down))
        elif len(self._queue) >= self._max_pending:
            self.refused += 1
            future.set_exception(StoreError(f"store overloaded: {len(self._queue)} writes waiting"))
        else:
            self._queue.append(Pending(statements, future))
            self._wake.set()
        return future

    async def write(self, statements: Sequence[Statement]) -> None:
        """Run ``statements`` atomically in the next group commit and wait until it is committed."""
        await self.submit(statements)

    async def _write_loop(self) -> None:
        batch: list[Pending] = []
        try:
            while True:
                if not self.connected:
                    if not await self._reconnect():
                        return
                    continue
                if not self._queue:
                    if self._closing:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._commit(batch)
        except asyncio.CancelledError:
            self._drop_connection()
            self._fail(batch + self._take_all(), StoreError("store is closed"))
            self._fail_in_doubt("store is closed")
            raise

    async def _reconnect(self) -> bool:
        """Connect the writer, retrying with backoff; what waits meanwhile fails. False once closing."""
        backoff = self._backoff
        while not (self._closing and not self._queue and not self._in_doubt):
            try:
                self._conn = await self._connect()
                await self._resolve_in_doubt(self._conn)
            except StoreError as exc:
                self._fail_in_doubt(str(exc))
                if self._down is None:
                    log.warning("%s; retrying every %.2f-%.2f s", exc, backoff, self._max_backoff)
                self._down = str(exc)
                self._fail(self._take_all(), exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._down is not None:
                log.info("store: reconnected")
            self._down = None
            return True
        self._fail_in_doubt("store is closed")
        return False

    def _fail_in_doubt(self, why: str) -> None:
        for _, items in self._in_doubt:
            self._fail(items, _unknown_outcome(why))
        self._in_doubt.clear()

    def _take_all(self) -> list[Pending]:
        items, self._queue = self._queue, []
        return items

    async def _commit(self, batch: list[Pending]) -> None:
        conn = self._conn
        assert conn is not None
        started = time.perf_counter()
        try:
            error = await self._run_batch(conn, batch)
            if error is None:
                self.commit_seconds.observe(time.perf_counter() - started)
                self.batches += 1
                self.statements += sum(len(item.statements) for item in batch)
                self._settle(batch, [])
                return
            # One bad unit must not fail the others of its batch.
            await self._isolate(conn, batch)
            self.commit_seconds.observe(time.perf_counter() - started)
            self.batches += 1
        except _Broken as exc:
            self._broken(batch, exc)

    async def _run_batch(self, conn: asyncpg.Connection, batch: list[Pending]) -> BaseException | None:
        """Every unit of ``batch`` in one transaction. A statement's error is returned (the transaction
        rolled back); a failure of the connection raises _Broken."""
        committing = False
        xid = None
        try:
            await conn.execute("BEGIN")
            xid = await conn.fetchval("SELECT txid_current()")
            try:
                await self._execute(conn, batch)
            except asyncpg.PostgresError as exc:
                if is_broken(exc, closed=conn.is_closed()):
                    raise
                await conn.execute("ROLLBACK")
                return exc
            committing = True
            await conn.execute("COMMIT")
        except Exception as exc:
            # A timeout, a dropped socket, a server going down: the connection is not used again.
            raise _Broken(exc, in_doubt=batch if committing else (), xid=xid) from exc
        self.statements += sum(len(item.statements) for item in batch)
        return None

    async def _execute(self, conn: asyncpg.Connection, units: list[Pending]) -> None:
        """The statements of ``units``: each run of one SQL text as one executemany, statements moved
        back to join the latest run of their text where order allows (``pgplan``)."""
        statements = (st for item in units for st in item.statements)
        if not self._executemany:
            for text, params in statements:
                await conn.execute(numbered(text), *params)
            return
        for text, rows in runs(statements):
            await _run(conn, text, rows)

    async def _isolate(self, conn: asyncpg.Connection, batch: list[Pending]) -> None:
        """Run ``batch`` again, a savepoint before each unit, and settle every unit: one that fails is
        rolled back to its savepoint and refused, the others commit."""
        for start in range(0, len(batch), _SAVEPOINTS):
            chunk = batch[start : start + _SAVEPOINTS]
            ok: list[Pending] = []
            failed: list[tuple[Pending, BaseException]] = []
            committing = False
            xid = None
            try:
                await conn.execute("BEGIN")
                xid = await conn.fetchval("SELECT txid_current()")
                await conn.execute("SAVEPOINT unit")
                for i, item in enumerate(chunk):
                    try:
                        await self._execute(conn, [item])
                    except asyncpg.PostgresError as exc:
                        if is_broken(exc, closed=conn.is_closed()):
                            raise
                        _refused(exc)
                        # Back to just after the last unit that succeeded; the savepoint stays for the next.
                        await conn.execute("ROLLBACK TO SAVEPOINT unit")
                        failed.append((item, exc))
                    else:
                        ok.append(item)
                        if i + 1 < len(chunk):
                            await conn.execute("RELEASE SAVEPOINT unit; SAVEPOINT unit")
                committing = True
                await conn.execute("COMMIT")
            except Exception as exc:
                # Earlier chunks are settled; this one's refused units stay refused (nothing of them
                # was written either way), the rest share the connection's fate.
                self._settle([], failed)
                raise _Broken(exc, in_doubt=ok if committing else (), xid=xid) from exc
            self.statements += sum(len(item.statements) for item in ok)
            self._settle(ok, failed)

    def _broken(self, batch: list[Pending], exc: _Broken) -> None:
        """The connection failed under ``batch``: drop it. Units whose COMMIT was sent wait for the
        next connection to tell whether it took; the others are retried once (nothing of them was
        written), unless the server stopped answering."""
        log.warning("store connection lost: %s", exc)
        self._drop_connection()
        doubtful = {id(item) for item in exc.in_doubt}
        if doubtful:
            self._in_doubt.append((exc.xid, [item for item in exc.in_doubt if not item.future.done()]))
        rest = [item for item in batch if not item.future.done() and id(item) not in doubtful]
        if isinstance(exc.__cause__, TimeoutError):
            self._fail(rest, StoreError(f"store timed out ({exc}): nothing was written"))
        else:
            self._retry(rest, exc)

    def _retry(self, items: list[Pending], exc: BaseException) -> None:
        """Queue ``items`` (not written) again ahead of the rest, once; fail those already retried."""
        again = [item for item in items if not item.retried]
        given_up = [item for item in items if item.retried]
        for item in again:
            item.retried = True
        self._queue[:0] = again
        self._fail(given_up, StoreError(f"store connection lost: {exc}"))

    async def _resolve_in_doubt(self, conn: asyncpg.Connection) -> None:
        """Ask the server whether the transactions whose COMMIT went unanswered took (txid_status)."""
        in_doubt, self._in_doubt = self._in_doubt, []
        for xid, items in reversed(in_doubt):  # requeued ahead of the rest: last batch first
            status = await self._commit_status(conn, xid)
            if status == "committed":
                self.batches += 1
                self.statements += sum(len(item.statements) for item in items)
                self._settle(items, [])
            elif status == "aborted":
                self._retry(items, StoreError("commit lost"))
            else:
                self._fail(items, _unknown_outcome(status))

    async def _commit_status(self, conn: asyncpg.Connection, xid: int | None) -> str | None:
        if xid is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                status: str | None = await conn.fetchval("SELECT txid_status($1)", xid)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                return None
            if status != "in progress" or loop.time() >= deadline:
                return status
            await asyncio.sleep(0.01)  # the old session is still finishing its COMMIT

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    def _settle(self, ok: list[Pending], failed: list[tuple[Pending, BaseException]]) -> None:
        for item in ok:
            if not item.future.done():
                item.future.set_result(None)
        for item, exc in failed:
            if not item.future.done():
                kind = (
                    ConstraintError
                    if isinstance(exc, asyncpg.IntegrityConstraintViolationError)
                    else StoreError
                )
                item.future.set_exception(kind(str(exc)))

    def _fail(self, items: list[Pending], exc: StoreError) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(StoreError(str(exc)))


async def _run(conn: asyncpg.Connection, sql: str, rows: list[Sequence[Any]]) -> None:
    if len(rows) == 1:
        await conn.execute(numbered(sql), *rows[0])
    else:
        await conn.executemany(numbered(sql), rows)


def _refused(exc: asyncpg.PostgresError) -> None:
    # A constraint violation is the caller's to report (already settled, not enough credits...).
    level = logging.DEBUG if isinstance(exc, asyncpg.IntegrityConstraintViolationError) else logging.WARNING
    log.log(level, "write refused by the store: %s", exc)


def _unknown_outcome(why: str | None) -> StoreError:
    return StoreError(
        f"store connection lost while committing ({why}): the write may or may not have been made"
    )


def why(exc: BaseException) -> str:
    """``exc`` in words, even when it has none."""
    return str(exc) or type(exc).__name__


def is_broken(exc: BaseException, *, closed: bool) -> bool:
    """Whether ``exc`` says the connection (or the server), not a statement, failed."""
    if closed:
        return True
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout: the session is fine
        return False
    return isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError)
