"""The store: where everything durable lives, behind one small Protocol (SQLite embedded; PostgreSQL
when several cores share it)."""

from core.store.base import ConstraintError, Statement, Store, StoreError, now_ms

__all__ = ["ConstraintError", "Statement", "Store", "StoreError", "now_ms"]
