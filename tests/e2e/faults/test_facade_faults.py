"""The facade killed under load and started again: SSE clients resume where they were."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.books import check_books
from tests.helpers.faultcase import StartNetwork, busy, mixed_clients, signed_in, summary, url
from tests.helpers.load import Load, wait_workers
from tests.helpers.procs import kill, restart
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


async def test_facade_sigkill_mid_load_then_restart(start_network: StartNetwork) -> None:
    net = start_network()
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        await eventually(lambda: busy(load) and load.tokens_seen >= 100, timeout=30)
        cut = set(load.live)
        await asyncio.to_thread(kill, net, "facade")
        await asyncio.to_thread(restart, net, "facade")
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    books = check_books(net.data_dir / "ashao.db", load.streams, given_up=load.unacknowledged)
    print(summary("facade SIGKILL", load, books))
    # In order, no duplicates, nothing missing (the load checks every event id and token index, the
    # books check each whole answer against the stored one), and no stream had to start over.
    assert not load.problems, load.problems
    assert load.unacknowledged == 0
    assert any(load.streams[j].resumes for j in cut), "no stream was cut by the kill"
    for job_id in cut:
        s = load.streams[job_id]
        assert s.terminal == {"type": "done", "tokens": 40}, (job_id, s.terminal)
        assert s.restarts == 0, job_id
