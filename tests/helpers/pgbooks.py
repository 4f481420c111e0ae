"""The books of a cluster's PostgreSQL store, checked by the same independent rules as a single core's
(``tests.helpers.books``): the tables those rules read are copied into a SQLite file first."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg

TABLES = {
    "jobs": ("id", "state", "cost", "payer", "tokens", "output", "attempts"),
    "settlements": ("job_id", "outcome"),
    "ledger": ("debit", "credit", "amount", "reason", "ref"),
}


async def copy_books(dsn: str, path: Path) -> Path:
    """Copy the jobs, settlements and ledger of the store at ``dsn`` into a new SQLite file ``path``."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = {
            table: await conn.fetch(f"SELECT {', '.join(cols)} FROM {table}")
            for table, cols in TABLES.items()
        }
    finally:
        await conn.close(timeout=10)
    with sqlite3.connect(path) as db:
        for table, cols in TABLES.items():
            db.execute(f"CREATE TABLE {table} ({', '.join(cols)})")
            marks = ", ".join("?" * len(cols))
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", [tuple(r) for r in rows[table]])
    return path


async def settlements_per_job(dsn: str) -> dict[str, int]:
    """How many settlements each job has in the store at ``dsn`` (a job charged twice shows as 2)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT job_id, COUNT(*) FROM settlements GROUP BY job_id")
    finally:
        await conn.close(timeout=10)
    return {str(r[0]): int(r[1]) for r in rows}
