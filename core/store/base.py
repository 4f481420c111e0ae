"""The store seam: what the rest of the core asks of durable storage.

Writes are units of statements, each unit atomic; a unit's future resolves once it is durable (an
implementation gathers concurrent units into group commits). Reads are plain queries. SQL uses ``?``
placeholders and the portable subset both SQLite and PostgreSQL accept; an implementation translates
placeholders if its driver needs another style.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from core.errors import UnavailableError

Statement = tuple[str, Sequence[Any]]
"""One SQL statement and its parameters."""


class StoreError(UnavailableError):
    """The store could not carry out a write or a read: the caller is told to retry (UNAVAILABLE)."""

    reason = "STORE_UNAVAILABLE"


class ConstraintError(StoreError):
    """A unit broke a constraint of the schema (a key already used, a balance that would go negative):
    nothing of it was written, and retrying the same unit cannot help. Callers that expect one turn it
    into their own refusal (already settled, not enough credits)."""

    reason = "CONFLICT"


class Store(Protocol):
    """Durable storage with group-committed atomic units."""

    dialect: str
    """"sqlite" or "postgresql": which flavour of the schema's few dialect-specific parts applies."""
    batches: int
    """Group commits made so far (for the vitals)."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations run here)."""
        ...

    async def close(self) -> None:
        """Commit what is queued, then disconnect. Idempotent."""
        ...

    def submit(self, statements: Sequence[Statement]) -> asyncio.Future[None]:
        """Queue ``statements`` as one atomic unit; the future resolves when they are durable, or
        fails with StoreError (nothing of the unit was written)."""
        ...

    async def write(self, statements: Sequence[Statement]) -> None:
        """``submit`` and wait."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query."""
        ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one query, or None."""
        ...


def now_ms() -> int:
    """Wall-clock time in Unix milliseconds, as stored."""
    return int(time.time() * 1000)
