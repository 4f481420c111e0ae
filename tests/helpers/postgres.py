"""A PostgreSQL server for the tests that need one: a fresh database per test, or a skip.

The server is ``ASHAO_TEST_POSTGRES_DSN`` (a role allowed to CREATE DATABASE), else the local default
``postgresql://postgres@127.0.0.1:5432/postgres``. It is probed once per session; when it does not
answer, every test that asks for it is skipped with the reason (point the variable at a closed port
to see the suite pass without it).

Modules that want the ``postgres_dsn`` fixture import it into their conftest.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ENV = "ASHAO_TEST_POSTGRES_DSN"

_probed: tuple[str, str | None] | None = None  # (admin DSN, why it cannot be used)


def admin_dsn() -> str:
    """The DSN tests create their databases through."""
    return os.environ.get(ENV) or DEFAULT_DSN


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def with_address(dsn: str, host: str, port: int) -> str:
    """``dsn`` reaching its server through ``host:port`` (a proxy), same user and database."""
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}:{port}"))


def address(dsn: str) -> tuple[str, int]:
    """The server's host and port in ``dsn``."""
    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{host}{port}"))


async def require_postgres() -> str:
    """The admin DSN, or skip the calling test: the server is probed once per session."""
    global _probed
    if _probed is None:
        dsn = admin_dsn()
        why: str | None = None
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close(timeout=3)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            why = f"PostgreSQL not reachable at {_redacted(dsn)} ({exc or type(exc).__name__}); set {ENV}"
        _probed = (dsn, why)
    dsn, why = _probed
    if why is not None:
        pytest.skip(why)
    return dsn


@asynccontextmanager
async def fresh_database(admin: str) -> AsyncIterator[str]:
    """A new empty database ``ashao_test_<random>`` on ``admin``'s server, dropped on exit; yields its
    DSN."""
    name = f"ashao_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"', timeout=30)
    finally:
        await conn.close(timeout=10)
    try:
        yield with_database(admin, name)
    finally:
        async with asyncio.timeout(30):
            conn = await asyncpg.connect(admin, timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close(timeout=10)


@pytest.fixture
async def postgres_dsn() -> AsyncIterator[str]:
    """The DSN of a fresh, empty PostgreSQL database for this test (dropped after it), or a skip."""
    admin = await require_postgres()
    async with fresh_database(admin) as dsn:
        yield dsn
