"""Store faults on demand: the next writes (or reads) of a real store fail as a full disk would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from core.store import Statement, Store, StoreError


@contextmanager
def failing_writes(store: Store, count: int = 1, *, when: str = "") -> Iterator[list[int]]:
    """The next ``count`` units submitted to ``store`` (those with a statement containing ``when``, if
    given) fail with StoreError and write nothing; yields the list of failed units' sizes."""
    submit = store.submit
    failed: list[int] = []

    def failing(statements: Sequence[Statement]) -> asyncio.Future[None]:
        if len(failed) < count and (not when or any(when in sql for sql, _ in statements)):
            failed.append(len(statements))
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(StoreError("disk I/O error (injected)"))
            return fut
        return submit(statements)

    store.submit = failing  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        store.submit = submit  # type: ignore[method-assign]


@contextmanager
def failing_reads(store: Store, count: int = 1, *, when: str = "") -> Iterator[list[str]]:
    """The next ``count`` queries (containing ``when``, if given) fail with StoreError."""
    fetchone, fetchall = store.fetchone, store.fetchall
    failed: list[str] = []

    def should_fail(sql: str) -> bool:
        if len(failed) < count and (not when or when in sql):
            failed.append(sql)
            return True
        return False

    async def one(sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        if should_fail(sql):
            raise StoreError("disk I/O error (injected)")
        return await fetchone(sql, params)

    async def many(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if should_fail(sql):
            raise StoreError("disk I/O error (injected)")
        return await fetchall(sql, params)

    store.fetchone = one  # type: ignore[method-assign]
    store.fetchall = many  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        store.fetchone, store.fetchall = fetchone, fetchall  # type: ignore[method-assign]
