"""One facade of two SIGKILLed while its clients stream: they reconnect to the other facade with
``Last-Event-ID`` and lose nothing (every event id in turn, the whole answer, ``done``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.cluster.conftest import StartCluster
from tests.helpers.books import check_books
from tests.helpers.clusternet import synthetic
from tests.helpers.faultcase import summary
from tests.helpers.load import Client, Load, wait_workers
from tests.helpers.pgbooks import copy_books
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

TOKENS = 40


async def test_facade_sigkill_clients_resume_on_the_other(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    net = await start_cluster(
        cores=2, facades=2, workers=2, worker_args=synthetic(slots=32, tokens=TOKENS, rate=10.0)
    )
    a, b = net.urls
    async with Load(a, failover=[b]) as load:
        await wait_workers(load.http, 2)
        load.start([Client("free") for _ in range(30)], rounds=2, stagger_s=0.02)
        await eventually(lambda: len(load.live) >= 20, timeout=30)
        cut = {j for j, s in load.streams.items() if s.terminal is None}
        await asyncio.to_thread(net.kill, "facade-1")
        await load.finish(timeout=60)
    net.stop()
    db = await copy_books(net.dsn, tmp_path / "books.db")
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    resumed = [load.streams[j] for j in cut]
    print(summary("facade-1 SIGKILL", load, books))
    print(
        f"[facade-1 SIGKILL] {len(cut)} streams open at the kill: {sum(1 for s in resumed if s.resumes)} resumed"
        f" on the other facade, {sum(1 for s in resumed if s.terminal == {'type': 'done', 'tokens': TOKENS})}"
        f" whole; client failovers {load.failovers}"
    )
    assert not load.problems, load.problems[:20]  # every event id in turn, no token twice or missing
    assert load.unacknowledged == 0
    assert load.failovers >= 1
    for s in resumed:  # nothing lost: each followed to its end, the whole answer, as stored
        assert s.terminal == {"type": "done", "tokens": TOKENS}, (s.job_id, s.terminal)
        assert len(s.tokens) == TOKENS and s.restarts == 0, (s.job_id, len(s.tokens), s.restarts)
    assert sum(1 for s in resumed if s.resumes) >= len(cut) // 2  # (the kill broke the streams it served)
