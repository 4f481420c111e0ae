"""No spliced answers: a job cut off mid-answer goes on only on a worker that continues it seamlessly;
otherwise its caller gets an error event and the charge back. And a paused core blames no worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ashao.v1 import account_pb2
from core.economics import SIGNUP_GRANT
from tests.helpers.core import Core, collect, connect_worker, core_settings, start_core, stop_core
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


async def _credits(core: Core, md: object) -> int:
    return (await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=md)).credits  # type: ignore[arg-type]


async def test_workers_that_would_start_over_do_not_get_a_partial_answer(core: Core) -> None:
    md = await core.sign_in()
    w1 = await connect_worker(core, slots=1)
    job_id, _ = await core.send("go", tier="pro", metadata=md)
    await w1.assignment()
    follower = asyncio.create_task(collect(core, job_id, metadata=md))
    await w1.tokens(job_id, ["half ", "an "])
    await eventually(lambda: len(core.app.jobs.board.get(job_id).log.tokens) == 2)
    plain = await connect_worker(core, slots=1, continues_prefix=False)  # e.g. a hosted API behind it
    w1.cancel()  # lost mid-answer
    events = await follower
    assert [e[1:] for e in events] == [("token", "half "), ("token", "an "), ("error", "NO_CONTINUATION")]
    assert await _credits(core, md) == SIGNUP_GRANT  # refunded
    assert core.app.jobs.snapshot().queue_depth == 0
    assert plain.worker_id in core.app.jobs.board.connections  # it was there, and was not given the job


async def test_with_no_worker_around_a_partial_answer_waits_then_ends_in_error(core: Core) -> None:
    w1 = await connect_worker(core, slots=1)
    job_id, _ = await core.send("go")
    await w1.assignment()
    await w1.tokens(job_id, ["part"])
    follower = asyncio.create_task(collect(core, job_id))
    await eventually(lambda: len(core.app.jobs.board.get(job_id).log.tokens) == 1)
    w1.cancel()
    await eventually(lambda: core.app.jobs.snapshot().queue_depth == 1)  # waiting for a continuing worker
    core.app.jobs.reaper.reap(time.monotonic() + core.app.settings.continuation_timeout_s + 1)
    events = await follower
    assert events[-1][1:] == ("error", "NO_CONTINUATION")


async def test_a_paused_core_does_not_blame_its_workers(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=1000))
    try:
        reaper = c.app.jobs.reaper
        offset = 0.0
        reaper.clock = lambda: time.monotonic() + offset
        w = await connect_worker(c, slots=1)
        job_id, _ = await c.send()
        await w.assignment()
        await reaper.tick()
        offset = 30.0  # the process did not run for 30 s: no heartbeat could be read meanwhile
        await reaper.tick()
        assert reaper.pauses == 1
        assert c.app.jobs.board.get(job_id).attempts == 1  # not taken back
        assert w.worker_id in c.app.jobs.board.connections
        await w.tokens(job_id, ["still here"])
        await w.complete(job_id)
        assert (await collect(c, job_id))[-1][1:] == ("done", 1)
    finally:
        await stop_core(c)
