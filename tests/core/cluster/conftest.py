"""Fixtures: two cores in the test's event loop sharing a fresh PostgreSQL database and a NATS cluster
name of their own (skipped where PostgreSQL or NATS is not reachable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bus import cluster_name, require_nats
from tests.helpers.core import Core, core_settings, start_core, stop_core
from tests.helpers.postgres import postgres_dsn

__all__ = ["cores", "postgres_dsn"]

StartCores = Callable[..., Awaitable[list[Core]]]


@pytest.fixture
async def cores(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[StartCores]:
    """``await cores(n, **settings)``: ``n`` started cores of one cluster (stopped at the end)."""
    url = await require_nats()
    started: list[Core] = []
    async with cluster_name(url) as name:

        async def start(n: int = 2, **overrides: Any) -> list[Core]:
            for _ in range(n):
                i = len(started) + 1
                settings = core_settings(
                    tmp_path / f"core-{i}", store=postgres_dsn, bus=url, cluster_name=name, **overrides
                )
                started.append(await start_core(settings))
            return started[-n:]

        try:
            yield start
        finally:
            for core in reversed(started):
                await stop_core(core)
