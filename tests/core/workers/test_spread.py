"""Load spreads over a real core's workers, and the live figures count only live workers."""

from __future__ import annotations

import asyncio

import pytest

from ashao.v1 import network_pb2, worker_pb2
from tests.helpers.core import Core, StreamWorker, collect, connect_worker
from tests.helpers.wait import eventually_async

pytestmark = pytest.mark.timeout(30)


async def test_sequential_jobs_over_two_equal_workers_both_get_a_share(core: Core) -> None:
    workers = [await connect_worker(core, slots=64), await connect_worker(core, slots=64)]
    got = {w.worker_id: 0 for w in workers}

    async def serve(w: StreamWorker) -> None:
        while True:
            a = await w.assignment(timeout=20)
            got[w.worker_id] += 1
            await w.tokens(a.job_id, ["an ", "answer"])
            await w.complete(a.job_id)

    async with asyncio.TaskGroup() as tg:
        servers = [tg.create_task(serve(w)) for w in workers]
        for i in range(20):  # one after another: each ends before the next is sent
            job_id, _ = await core.send(f"job {i}")
            assert [e[1] for e in await collect(core, job_id)][-1] == "done"
        for t in servers:
            t.cancel()
    assert sum(got.values()) == 20
    assert min(got.values()) >= 5, got


async def _active(core: Core) -> int:
    return (await core.network.GetStats(network_pb2.GetStatsRequest())).active_workers


async def test_active_workers_counts_connected_and_polling_workers_only(core: Core) -> None:
    streaming = await connect_worker(core)
    _, token = await core.register()
    assert await _active(core) == 1
    # a pull worker counts while it polls
    await core.workers.ClaimJob(
        worker_pb2.ClaimJobRequest(tier="free"), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert await _active(core) == 2
    # a stream worker that left stops counting at once, not when its last message grows old
    streaming.cancel()

    async def one_left() -> bool:
        return await _active(core) == 1

    await eventually_async(one_left)
