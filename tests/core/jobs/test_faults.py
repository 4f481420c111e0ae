"""Faults: lost workers, leases, retries, restarts, foreign workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from ashao.v1 import chat_pb2, common_pb2, worker_pb2
from tests.helpers.core import (
    Core,
    StreamWorker,
    collect,
    connect_worker,
    core_settings,
    start_core,
    stop_core,
)
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


async def test_dropped_worker_jobs_finish_on_another_worker_seamlessly(core: Core) -> None:
    w1 = await connect_worker(core, slots=1)
    job_id, _ = await core.send("go")
    await w1.assignment()
    follower = asyncio.create_task(collect(core, job_id))
    await w1.tokens(job_id, ["one ", "two "])
    await eventually(lambda: len(core.app.jobs.board.get(job_id).log.tokens) == 2)
    w1.cancel()  # the worker's stream drops mid-job
    w2 = await connect_worker(core, slots=1)
    a = await w2.assignment()
    assert a.job_id == job_id and a.attempt == 2 and a.prefix == "one two "
    await w2.tokens(job_id, ["three"], offset=0)
    await w2.complete(job_id)
    events = await follower
    assert events == [(1, "token", "one "), (2, "token", "two "), (3, "token", "three"), (4, "done", 3)]


async def test_attempts_exhausted_ends_with_error_event(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, max_attempts=2))
    try:
        job_id, _ = await c.send()
        follower = asyncio.create_task(collect(c, job_id))
        w = await connect_worker(c, slots=1)
        for attempt in (1, 2):
            a = await w.assignment()
            assert (a.job_id, a.attempt) == (job_id, attempt)
            await w.tokens(job_id, [f"t{attempt}"])
            await w.fail(job_id, retryable=True)
        events = await follower
        assert events == [(1, "token", "t1"), (2, "token", "t2"), (3, "error", "ATTEMPTS_EXHAUSTED")]
        job = (await c.chat.GetJob(chat_pb2.GetJobRequest(job_id=job_id))).job
        assert job.state == common_pb2.JOB_STATE_FAILED and job.attempts == 2
    finally:
        await stop_core(c)


async def test_non_retryable_failure_fails_at_once(core: Core) -> None:
    w = await connect_worker(core)
    job_id, _ = await core.send()
    await w.assignment()
    await w.fail(job_id, retryable=False)
    events = await collect(core, job_id)
    assert events == [(1, "error", "WORKER_FAILED")]


async def test_silent_worker_loses_its_jobs(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=100))
    try:
        w1 = await connect_worker(c, slots=1)
        job_id, _ = await c.send()
        await w1.assignment()
        # w1 never heartbeats: after 3 intervals the core ends its stream and requeues the job.
        w2 = await connect_worker(c, slots=1)
        heartbeats = asyncio.create_task(_heartbeat_forever(w2))
        try:
            a = await w2.assignment(timeout=5)
            assert a.job_id == job_id and a.attempt == 2
            assert await asyncio.wait_for(w1.call.read(), 5) is grpc.aio.EOF
        finally:
            heartbeats.cancel()
    finally:
        await stop_core(c)


async def test_alive_but_stalled_worker_gives_the_job_back(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=100, job_stall_timeout_s=0.5))
    try:
        w1 = await connect_worker(c, slots=1)
        beats1 = asyncio.create_task(_heartbeat_forever(w1))
        job_id, _ = await c.send()
        await w1.assignment()
        await w1.tokens(job_id, ["only "])  # then nothing more, though it keeps heartbeating
        w2 = await connect_worker(c, slots=1)
        beats2 = asyncio.create_task(_heartbeat_forever(w2))
        try:
            cancel = await w1.next(timeout=5)
            assert cancel.HasField("cancel") and cancel.cancel.job_id == job_id
            assert "no token" in cancel.cancel.reason
            a = await w2.assignment(timeout=5)
            assert (a.job_id, a.attempt, a.prefix) == (job_id, 2, "only ")
            await w2.tokens(job_id, ["and more"], offset=0)
            await w2.complete(job_id)
            events = await collect(c, job_id)
            assert events == [(1, "token", "only "), (2, "token", "and more"), (3, "done", 2)]
        finally:
            beats1.cancel()
            beats2.cancel()
    finally:
        await stop_core(c)


async def _heartbeat_forever(w: StreamWorker) -> None:
    for _ in range(200):
        await w.heartbeat()
        await asyncio.sleep(0.05)


async def test_worker_may_publish_only_to_its_own_jobs(core: Core) -> None:
    w1 = await connect_worker(core, slots=1)
    w2 = await connect_worker(core, slots=1)
    job_id, _ = await core.send()
    a = await (w1 if core.app.jobs.board.get(job_id).worker_id == w1.worker_id else w2).assignment()
    other = w2 if core.app.jobs.board.get(job_id).worker_id == w1.worker_id else w1
    await other.tokens(a.job_id, ["intruder"])
    msg = await other.next()
    assert msg.HasField("rejected") and msg.rejected.code == "PERMISSION_DENIED"
    assert core.app.jobs.board.get(job_id).log.tokens == []
    # the same through the pull path
    _, token = await core.register()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.workers.PublishTokens(
            worker_pb2.PublishTokensRequest(tokens=worker_pb2.JobTokens(job_id=job_id, tokens=["x"])),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_worker_calls_need_a_valid_token(core: Core) -> None:
    for md in ((), (("authorization", "Bearer wtok_forged"),)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="free"), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # The core refuses the stream on its metadata, before any hello: a hello written at that moment can
    # race the refusal inside the gRPC library (the write then fails locally as INTERNAL), so read only.
    call = core.workers.Connect(metadata=(("authorization", "Bearer nope"),))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_queued_jobs_survive_a_restart(tmp_path: Path) -> None:
    settings = core_settings(tmp_path)
    c = await start_core(settings)
    jobs = [(await c.send(f"m{i}"))[0] for i in range(3)]
    w = await connect_worker(c, slots=1)
    a = await w.assignment()  # one job assigned when the core goes down: it is requeued too
    assert a.job_id == jobs[0]
    await stop_core(c)
    c = await start_core(settings)
    try:
        assert c.app.jobs.snapshot().queue_depth == 3
        w = await connect_worker(c, slots=3)
        got = {(await w.assignment()).job_id for _ in range(3)}
        assert got == set(jobs)
        for j in jobs:
            await w.tokens(j, ["ok"])
            await w.complete(j)
        for j in jobs:
            assert (await collect(c, j))[-1] == (2, "done", 1)
    finally:
        await stop_core(c)


async def test_finished_job_replays_from_the_store_after_restart(tmp_path: Path) -> None:
    settings = core_settings(tmp_path)
    c = await start_core(settings)
    w = await connect_worker(c)
    job_id, _ = await c.send()
    await w.assignment()
    await w.tokens(job_id, ["x", "y"])
    await w.complete(job_id)
    before = await collect(c, job_id)
    await stop_core(c)
    c = await start_core(settings)
    try:
        assert await collect(c, job_id) == before == [(1, "token", "x"), (2, "token", "y"), (3, "done", 2)]
    finally:
        await stop_core(c)
