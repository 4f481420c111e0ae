"""The core under load: killed and restarted, or paused longer than three heartbeat intervals."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers.books import check_books, promise_problems, read_books
from tests.helpers.faultcase import (
    StartNetwork,
    attempts,
    busy,
    mixed_clients,
    query,
    signed_in,
    summary,
    url,
)
from tests.helpers.load import Client, Load, wait_workers
from tests.helpers.procs import child, kill, restart, stopped
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

PAUSE_S = 10.0
"""How long the core stays stopped: 20 heartbeat intervals of 0.5 s (the fault's length, not a wait)."""


async def test_core_sigkill_mid_load_then_restart(start_network: StartNetwork) -> None:
    net = start_network()
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        await eventually(lambda: busy(load), timeout=30)
        cut = set(load.live)
        await asyncio.to_thread(kill, net, "core")
        await asyncio.to_thread(restart, net, "core")
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    db = net.data_dir / "ashao.db"
    books = read_books(db)
    print(summary("core SIGKILL", load, books))
    assert not books.problems, books.problems
    assert not load.problems, load.problems
    assert load.unacknowledged == 0
    assert all(load.streams[j].terminal is not None for j in cut)
    assert not promise_problems(db, load.streams, given_up=load.unacknowledged)  # no answer spliced


async def test_core_restart_while_the_facade_lags_splices_no_answer(start_network: StartNetwork) -> None:
    """The facade comes back to the restarted core only once every job its clients followed has ended
    there: an answer cut off by the restart ends in an error (refunded), never joined to another."""
    net = start_network()
    db = net.data_dir / "ashao.db"
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start([Client("free") for _ in range(4)], rounds=1)
        await eventually(
            lambda: len(load.live) == 4 and all(len(s.tokens) >= 5 for s in load.streams.values())
        )

        def redone() -> bool:
            states = {state for _, state in query(db, "SELECT id, state FROM jobs")}
            return states <= {"done", "failed"}

        with stopped(child(net, "facade")):
            await asyncio.to_thread(kill, net, "core")
            await asyncio.to_thread(restart, net, "core")
            await eventually(redone, timeout=30)
        await load.finish(timeout=60)
    net.stop()
    assert not load.problems, load.problems
    assert not promise_problems(db, load.streams)  # each client has the answer the store kept


async def test_core_paused_longer_than_heartbeats_evicts_nobody(start_network: StartNetwork) -> None:
    net = start_network()
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        await eventually(lambda: busy(load), timeout=30)
        running = set(load.live)
        with stopped(child(net, "core")):
            await asyncio.sleep(PAUSE_S)
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    db = net.data_dir / "ashao.db"
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    print(summary("core SIGSTOP", load, books))
    assert not load.problems, load.problems
    assert load.unacknowledged == 0
    # No worker was lost for the pause: the jobs running through it kept their first attempt, and
    # their streams went on (no break, no error) to done.
    assert attempts(db, running) == dict.fromkeys(running, 1)
    for job_id in running:
        s = load.streams[job_id]
        assert s.terminal == {"type": "done", "tokens": 40}, (job_id, s.terminal)
        assert (s.resumes, s.restarts) == (0, 0), job_id
