"""The pull path for simple workers, sharing the queues with the push path."""

from __future__ import annotations

import time

import grpc
import pytest

from ashao.v1 import common_pb2, worker_pb2
from tests.helpers.core import Core, collect

pytestmark = pytest.mark.timeout(30)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_claim_publish_complete(core: Core) -> None:
    wid, token = await core.register(tiers=("free", "pro"))
    empty = await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="free"), metadata=auth(token))
    assert not empty.HasField("job")
    user = await core.sign_in(credits=3)
    job_id, _ = await core.send("hi", tier="pro", metadata=user)
    r = await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="pro"), metadata=auth(token))
    assert r.job.id == job_id and r.job.model == "ashao-pro" and r.job.state == common_pb2.JOB_STATE_ASSIGNED
    assert [(m.role, m.content) for m in r.messages] == [("user", "hi")]
    for i, tok in enumerate(["a", "b", "c"]):
        pub = await core.workers.PublishTokens(
            worker_pb2.PublishTokensRequest(
                tokens=worker_pb2.JobTokens(job_id=job_id, offset=i, tokens=[tok])
            ),
            metadata=auth(token),
        )
        assert pub.accepted == i + 1
    # a retried POST of the last token is not counted again
    pub = await core.workers.PublishTokens(
        worker_pb2.PublishTokensRequest(tokens=worker_pb2.JobTokens(job_id=job_id, offset=2, tokens=["c"])),
        metadata=auth(token),
    )
    assert pub.accepted == 3
    done = await core.workers.CompleteJob(worker_pb2.CompleteJobRequest(job_id=job_id), metadata=auth(token))
    assert done.tokens == 3
    assert await collect(core, job_id, metadata=user) == [
        (1, "token", "a"),
        (2, "token", "b"),
        (3, "token", "c"),
        (4, "done", 3),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as info:  # completing twice is refused
        await core.workers.CompleteJob(worker_pb2.CompleteJobRequest(job_id=job_id), metadata=auth(token))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    hb = await core.workers.Heartbeat(worker_pb2.HeartbeatRequest(tokens_per_sec=12.5), metadata=auth(token))
    assert hb.heartbeat_interval_ms > 0
    assert wid


async def test_claim_validates_tier(core: Core) -> None:
    _, token = await core.register(tiers=("free",))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="gold"), metadata=auth(token))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="pro"), metadata=auth(token))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_expired_lease_requeues_the_job(core: Core) -> None:
    _, t1 = await core.register()
    _, t2 = await core.register()
    job_id, _ = await core.send()
    await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="free"), metadata=auth(t1))
    core.app.jobs.reaper.reap(time.monotonic() + core.app.settings.lease_timeout_s + 1)
    r = await core.workers.ClaimJob(worker_pb2.ClaimJobRequest(tier="free"), metadata=auth(t2))
    assert r.job.id == job_id and r.job.attempts == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the first worker lost it
        await core.workers.PublishTokens(
            worker_pb2.PublishTokensRequest(tokens=worker_pb2.JobTokens(job_id=job_id, tokens=["late"])),
            metadata=auth(t1),
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_expired_queue_wait_ends_the_job(core: Core) -> None:
    job_id, _ = await core.send()
    core.app.jobs.reaper.reap(time.monotonic() + core.app.settings.queue_timeout_s + 1)
    assert await collect(core, job_id) == [(1, "error", "EXPIRED")]
    assert core.app.jobs.snapshot().queue_depth == 0
