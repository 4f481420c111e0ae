"""The PostgreSQL store (several cores sharing one database): the writer's group commits on a
connection of its own (``pgwriter``), reads on a pool, migrations at open under an advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from core.store import schema
from core.store.base import StoreError, now_ms
from core.store.pgsql import number_from_text, numbered
from core.store.pgwriter import GroupWriter, is_broken, why

log = logging.getLogger("ashao.core.store")

_MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"ashao.schema").digest()[:8], "big", signed=True)
"""The advisory lock cores starting at once take to run the migrations one after another."""


class PostgresStore(GroupWriter):
    """Group-committing PostgreSQL store on asyncpg. ``await write(...)`` returns once committed."""

    dialect = "postgresql"

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        max_batch: int = 512,
        max_pending: int = 20_000,
        executemany: bool = True,
        timeout_s: float = 5.0,
        migrate_timeout_s: float = 120.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        """``pool_size`` connections in all: the writer's own, and the others for reads (at least one).
        ``timeout_s`` bounds every connect and every statement; ``migrate_timeout_s`` the migrations
        (another core may hold their lock)."""
        if pool_size < 2:
            raise ValueError("pool_size: the writer needs one connection and reads at least one")
        super().__init__(
            max_batch=max_batch,
            max_pending=max_pending,
            executemany=executemany,
            timeout_s=timeout_s,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
        )
        self._dsn = dsn
        self._pool_size = pool_size
        self._migrate_timeout = migrate_timeout_s
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Connect, bring the schema up to date (under an advisory lock: cores may start at once), start
        the writer. Raises StoreError if the database cannot be reached."""
        migrating = await self._connect()
        try:
            applied = await self._migrate(migrating)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreError(f"store migrations failed: {exc}") from exc
        finally:
            await self._close_connection(migrating)  # its session's lock goes with it
        if applied:
            log.info("store: applied schema migrations %s", applied)
        conn = await self._connect()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=0,  # opened on demand: no background reconnecting while the server is down
                max_size=self._pool_size - 1,
                timeout=self._timeout,
                command_timeout=self._timeout,
                init=_init_connection,
                reset=_keep_session,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            conn.terminate()
            raise StoreError(f"store unreachable: {why(exc)}") from exc
        self._start_writer(conn)

    async def _connect(self) -> asyncpg.Connection:
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout,
                command_timeout=self._timeout,
                # A transaction this store left open (its connection lost) ends on the server too,
                # instead of holding its locks until the server notices the connection is gone.
                server_settings={"idle_in_transaction_session_timeout": str(int(self._timeout * 2000))},
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreError(f"store unreachable: {why(exc)}") from exc
        try:
            await _init_connection(conn)
        except BaseException as exc:
            conn.terminate()
            raise StoreError(f"store unreachable: {why(exc)}") from exc
        return conn

    async def _migrate(self, conn: asyncpg.Connection) -> list[int]:
        timeout = self._migrate_timeout
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK, timeout=timeout)
        await conn.execute(schema.VERSION_TABLE, timeout=timeout)
        done = {v for (v,) in await conn.fetch("SELECT version FROM schema_version", timeout=timeout)}
        applied = []
        for version, _ in schema.MIGRATIONS:
            if version in done:
                continue
            async with conn.transaction():
                for sql in schema.statements(version, self.dialect):
                    await conn.execute(sql, timeout=timeout)
                await conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)",
                    version,
                    now_ms(),
                    timeout=timeout,
                )
            applied.append(version)
        return applied

    async def close(self) -> None:
        """Commit what is queued, then disconnect. Idempotent."""
        if self._closing:
            return
        await self._stop_writer()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except (Exception, TimeoutError):
                pool.terminate()

    # -- reads -----------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query."""
        return [tuple(r) for r in await self._read(sql, params, one=False)]

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or None."""
        rows = await self._read(sql, params, one=True)
        return tuple(rows[0]) if rows else None

    async def _read(self, sql: str, params: Sequence[Any], *, one: bool) -> list[asyncpg.Record]:
        pool = self._pool
        if pool is None:
            raise StoreError("store is closed")
        if self._down is not None:  # the writer cannot reach the server either: do not wait to learn it
            raise StoreError(self._down)
        query = numbered(sql)
        for attempt in (1, 2):
            try:
                async with pool.acquire(timeout=self._timeout) as conn:
                    try:
                        if one:
                            row = await conn.fetchrow(query, *params)
                            return [] if row is None else [row]
                        return await conn.fetch(query, *params)
                    except (Exception, asyncio.CancelledError) as exc:
                        if not isinstance(exc, asyncpg.PostgresError) or is_broken(exc, closed=False):
                            # Not returned to the pool in an unknown state (a lost one is gone already).
                            with contextlib.suppress(asyncpg.InterfaceError):
                                conn.terminate()
                        raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                # A pooled connection the server dropped while idle: once more, on a new one.
                lost = isinstance(exc, asyncpg.PostgresConnectionError | ConnectionError)
                if attempt == 1 and lost:
                    continue
                raise StoreError(f"store read failed: {why(exc)}") from exc
        raise AssertionError("unreachable")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A read connection goes back to the pool as it is: reads change nothing of their session (no
    setting, lock, listener or cursor), so asyncpg's reset — one more round trip per read — is skipped
    (an open transaction is still rolled back by asyncpg before this runs)."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # SUM over BIGINT is NUMERIC in PostgreSQL (a Decimal); SQLite returns an int.
    await conn.set_type_codec(
        "numeric", schema="pg_catalog", encoder=str, decoder=number_from_text, format="text"
    )
