"""End-to-end fixtures: the real processes (core, facade, workers) on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from ashao_cli.devnet import LocalNetwork
from tests.helpers.net import free_port


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    n = LocalNetwork(
        data_dir=tmp_path / "data",
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        extra_env={"ASHAO_HEARTBEAT_INTERVAL_MS": "300"},
    )
    try:
        n.start_core()
        n.start_facade()
        yield n
    finally:
        n.stop(timeout=15)


@pytest.fixture
async def http(net: LocalNetwork) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{net.http_addr}", timeout=15) as client:
        yield client
