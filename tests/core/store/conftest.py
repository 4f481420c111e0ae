"""Fixtures: each store scenario on both engines (SQLite in ``tmp_path``; PostgreSQL in a fresh
database, or skipped when no server answers)."""

from __future__ import annotations

from tests.helpers.engines import Engine, engine
from tests.helpers.postgres import postgres_dsn

__all__ = ["Engine", "engine", "postgres_dsn"]
