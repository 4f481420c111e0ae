"""Fixtures of the cluster's fault cases: cores, facades and synthetic workers as real processes sharing
a fresh PostgreSQL database and a NATS cluster name of their own (skipped where PostgreSQL or NATS is not
reachable); NATS may be a server of the test's own, which the test can kill and start again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bus import cluster_name, require_nats
from tests.helpers.clusternet import NATS_SERVER_ENV, ClusterNet, OwnNats
from tests.helpers.postgres import postgres_dsn

__all__ = ["postgres_dsn"]

StartCluster = Callable[..., Awaitable[ClusterNet]]


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    """A NATS server (JetStream on disk in ``tmp_path``) of this test's own, started; killed at the end."""
    server = OwnNats(tmp_path / "nats")
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"could not start a nats-server of the test's own ({exc}); set {NATS_SERVER_ENV}")
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def start_cluster(postgres_dsn: str, tmp_path: Path) -> AsyncIterator[StartCluster]:
    """``await start_cluster(cores=2, facades=2, workers=4, bus=url, ...)``: the processes of one cluster
    on this test's database (reached at ``dsn`` if given) and the shared NATS (unless ``bus`` names
    another), stopped at the end."""
    shared = await require_nats()
    nets: list[ClusterNet] = []
    async with cluster_name(shared) as name:

        async def start(*, bus: str = "", **options: Any) -> ClusterNet:
            dsn = options.pop("dsn", postgres_dsn)  # (the same database through a proxy, say)
            net = ClusterNet(tmp_path / "net", dsn=dsn, bus=bus or shared, cluster=name, **options)
            nets.append(net)
            await net.start()
            return net

        try:
            yield start
        finally:
            for net in nets:
                net.stop()
