"""Stores of both engines for scenarios that must hold on each: SQLite in ``tmp_path``; PostgreSQL in a
fresh database, or skipped when no server answers. Conftests import ``engine`` (and ``postgres_dsn``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.store import Store
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from tests.helpers.postgres import fresh_database, require_postgres


@dataclass
class Engine:
    """Makes stores of one engine, all on the same database."""

    name: str
    make: Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    if request.param == "sqlite":

        def sqlite(**options: Any) -> Store:
            return SqliteStore(tmp_path / "s.db", synchronous="NORMAL", **options)

        yield Engine("sqlite", sqlite)
        return
    async with fresh_database(await require_postgres()) as dsn:

        def postgresql(**options: Any) -> Store:
            return PostgresStore(dsn, **options)

        yield Engine("postgresql", postgresql)
