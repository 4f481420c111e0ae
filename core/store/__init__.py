"""The store: where everything durable lives, behind one small Protocol (SQLite today)."""

from core.store.base import Statement, Store, StoreError, now_ms

__all__ = ["Statement", "Store", "StoreError", "now_ms"]
