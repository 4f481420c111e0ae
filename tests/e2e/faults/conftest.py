"""Fixtures of the fault suite: a network of real processes with two synthetic workers, under load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ashao_cli.devnet import LocalNetwork
from tests.helpers.faultcase import FAULT_ENV, WORKER_ARGS, StartNetwork
from tests.helpers.net import free_port


@pytest.fixture
def start_network(tmp_path: Path) -> Iterator[StartNetwork]:
    """Starts core, facade and workers ``w1``, ``w2``, ... (call it with ``data_dir``, ``env``,
    ``workers``); every network it started is stopped at the end, whatever happened."""
    started: list[LocalNetwork] = []

    def start(
        *, data_dir: Path | None = None, env: dict[str, str] | None = None, workers: int = 2
    ) -> LocalNetwork:
        net = LocalNetwork(
            data_dir=data_dir or tmp_path / "data",
            http_addr=f"127.0.0.1:{free_port()}",
            grpc_addr=f"127.0.0.1:{free_port()}",
            extra_env={**FAULT_ENV, **(env or {})},
        )
        started.append(net)
        net.start_core()
        net.start_facade()
        for i in range(1, workers + 1):
            net.start_worker(f"w{i}", *WORKER_ARGS)
        return net

    try:
        yield start
    finally:
        for net in started:
            net.stop(timeout=15)
