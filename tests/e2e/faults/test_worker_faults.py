"""A worker lost under load: killed mid-answer, or paused past its heartbeat timeout, with a second
worker that continues partial answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.books import check_books
from tests.helpers.faultcase import (
    StartNetwork,
    attempts,
    connected,
    mixed_clients,
    query,
    signed_in,
    summary,
    until,
    url,
    worker_id,
)
from tests.helpers.load import Load, wait_workers
from tests.helpers.procs import child, kill, stopped
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


def running_on(db: Path, worker: str, live: set[str]) -> set[str]:
    """Jobs of ``live`` the store says ``worker`` holds."""
    sql = "SELECT id FROM jobs WHERE worker_id = ? AND state IN ('assigned', 'streaming')"
    return {str(j) for (j,) in query(db, sql, (worker,))} & live


async def test_worker_sigkill_mid_answer_continues_on_the_other(start_network: StartNetwork) -> None:
    net = start_network()
    db = net.data_dir / "ashao.db"
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        w1 = worker_id(net, "w1")
        await eventually(lambda: len(running_on(db, w1, load.live)) >= 4, timeout=30)
        held = running_on(db, w1, load.live)
        await asyncio.to_thread(kill, net, "worker w1")
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    print(summary("worker SIGKILL", load, books))
    assert not load.problems, load.problems
    # Seamless: every answer whole and in order on the stream it started on, no error, no reopening.
    for s in load.streams.values():
        assert s.terminal == {"type": "done", "tokens": 40}, (s.job_id, s.terminal)
        assert (s.resumes, s.restarts) == (0, 0), s.job_id
    # Its jobs were continued by the other worker (one may have finished as it was killed).
    tries = attempts(db, held)
    assert set(tries.values()) <= {1, 2} and 2 in tries.values(), tries


async def test_worker_paused_past_its_heartbeats_loses_its_jobs_once(start_network: StartNetwork) -> None:
    net = start_network()
    db = net.data_dir / "ashao.db"
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        w1 = worker_id(net, "w1")
        await eventually(lambda: len(running_on(db, w1, load.live)) >= 4, timeout=30)
        held = running_on(db, w1, load.live)
        had = {j: len(load.streams[j].tokens) for j in held}

        def moved_on() -> bool:
            # Well past what the stopped worker may have had in flight: another worker produces them.
            return all(load.streams[j].terminal or len(load.streams[j].tokens) >= had[j] + 8 for j in held)

        async def gone() -> bool:
            return not await connected(net, w1)

        async def back() -> bool:
            return await connected(net, w1)

        with stopped(child(net, "worker w1")):
            await until(gone, timeout=30, what="the core lets the silent worker go")
            await eventually(moved_on, timeout=30)
        # Resumed, it finds its stream closed: what it had buffered for jobs no longer its own must
        # not reach any client (the load sees every repeated or foreign token; the books compare each
        # answer with the stored one). It connects again.
        await until(back, timeout=30, what="the worker connects again")
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    books = check_books(db, load.streams, given_up=load.unacknowledged)
    print(summary("worker SIGSTOP", load, books))
    assert not load.problems, load.problems
    # Its jobs went to the other worker (or ended with an error); one may have finished as it stopped.
    assert all(load.streams[j].terminal is not None for j in held)
    assert max(attempts(db, held).values()) >= 2, attempts(db, held)
