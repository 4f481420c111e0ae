"""The cluster's NATS server (JetStream on disk; a server of the test's own, never the shared one) killed
mid-load and started again: every acknowledged job survives and ends (done, or an error for an answer cut
off), and the cluster goes on serving with no manual step."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.cluster.conftest import StartCluster
from tests.helpers.books import check_books
from tests.helpers.clusternet import OwnNats, synthetic
from tests.helpers.faultcase import summary
from tests.helpers.load import Client, Load, wait_workers
from tests.helpers.pgbooks import copy_books, settlements_per_job
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

DOWN_S = 6.0
"""How long NATS stays down: longer than a publish waits for JetStream's acknowledgement (the fault's
length, not a wait)."""


async def test_nats_restart_mid_load(start_cluster: StartCluster, own_nats: OwnNats, tmp_path: Path) -> None:
    net = await start_cluster(
        bus=own_nats.url, cores=2, facades=1, workers=2, worker_args=synthetic(slots=32, tokens=20, rate=10.0)
    )
    async with Load(net.urls[0]) as load:
        await wait_workers(load.http, 2)
        load.start([Client("free") for _ in range(40)], stagger_s=0.02)
        await eventually(lambda: len(load.live) >= 20, timeout=30)
        loop = asyncio.get_running_loop()
        before = load.mark()
        await asyncio.to_thread(own_nats.kill)
        down_at = loop.time()
        # sends go on being acknowledged while NATS is down (the store holds the jobs)
        await eventually(lambda: load.mark() >= before + 10, timeout=30)
        await asyncio.sleep(DOWN_S - (loop.time() - down_at))
        await asyncio.to_thread(own_nats.start)
        down_s = loop.time() - down_at
        during = set(list(load.streams)[before:])
        mark = load.mark()
        await eventually(lambda: all(load.streams[j].terminal for j in during), timeout=45)
        resumed_s = loop.time() - down_at - down_s
        await eventually(lambda: load.done_since(mark) >= 20, timeout=30)
        load.stop()
        await load.finish(timeout=40)
    net.stop()
    db = await copy_books(net.dsn, tmp_path / "books.db")
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    charged = await settlements_per_job(net.dsn)
    ends = [load.streams[j].terminal for j in during]
    print(summary("NATS restart", load, books))
    print(
        f"[NATS restart] down {down_s:.1f} s; {len(during)} sends acknowledged meanwhile, all ended"
        f" {resumed_s:.1f} s after NATS was back: done {sum(1 for t in ends if t and t['type'] == 'done')}"
        f" error {sum(1 for t in ends if t and t['type'] == 'error')}"
    )
    assert not load.problems, load.problems[:20]
    assert load.unacknowledged == 0
    assert max(charged.values(), default=0) <= 1
    # the jobs acknowledged while NATS was down ran once it was back (none of them had begun)
    assert all(t == {"type": "done", "tokens": 20} for t in ends), ends
