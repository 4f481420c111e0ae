"""Fixtures: a real core in-process for agents run as tasks of the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.core import Core, core_settings, start_core, stop_core


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    # Agents here register on an open network (who may join is tested in test_registration.py).
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=1000, worker_registration="open"))

    try:
        yield c
    finally:
        await stop_core(c)


@pytest.fixture
async def patient_core(tmp_path: Path) -> AsyncIterator[Core]:
    """A core that waits half an hour for a worker's heartbeat: an agent whose clock the test moves
    by hand beats only when the test says, and is not lost meanwhile."""
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=600_000, worker_registration="open"))
    try:
        yield c
    finally:
        await stop_core(c)
