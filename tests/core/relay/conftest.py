"""Fixtures: stores of both engines."""

from __future__ import annotations

from tests.helpers.engines import engine

__all__ = ["engine"]
