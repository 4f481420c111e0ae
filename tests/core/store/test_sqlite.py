"""The SQLite store's own concerns: the file is owner-only, and stores from before versioning are adopted
(what it shares with every store is in test_stores.py)."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from core.store.schema import LATEST
from core.store.sqlite import SqliteStore, migrate

pytestmark = pytest.mark.timeout(30)


async def test_migrations_run_once_and_the_file_is_owner_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db", synchronous="NORMAL")
    await store.open()
    await store.close()
    assert stat.S_IMODE((tmp_path / "m.db").stat().st_mode) == 0o600
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    try:
        versions = [v for (v,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, LATEST + 1))
        assert migrate(db) == []  # nothing left to apply
    finally:
        db.close()


def test_a_store_from_before_versioning_is_adopted(tmp_path: Path) -> None:
    """Tables created without a schema_version (an older release) keep their rows and get the new
    columns; the safety chain keeps its insertion order."""
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    db.execute(
        "CREATE TABLE safety_ledger (state_height INTEGER NOT NULL, idx INTEGER NOT NULL, stage TEXT NOT NULL,"
        " verdict TEXT NOT NULL, category TEXT NOT NULL, reason TEXT NOT NULL, text_sha256 TEXT NOT NULL,"
        " policy_hash TEXT NOT NULL, created_at INTEGER NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,"
        " PRIMARY KEY (state_height, idx))"
    )
    for h, i in ((2, 0), (1, 0), (1, 1)):  # chained in this order, not in key order
        db.execute(
            "INSERT INTO safety_ledger VALUES (?, ?, 's', 'v', 'c', 'r', 't', 'p', 0, 'x', 'y')", (h, i)
        )
    assert migrate(db) == list(range(1, LATEST + 1))
    rows = db.execute("SELECT state_height, idx FROM safety_ledger ORDER BY seq").fetchall()
    assert rows == [(2, 0), (1, 0), (1, 1)]
    db.close()
