"""The chat path through a real core: send, push to a stream worker, tokens, done, persistence."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from ashao.v1 import account_pb2, chat_pb2, common_pb2, network_pb2, worker_pb2
from core.economics import SIGNUP_GRANT, TIERS
from tests.helpers.core import Core, collect, connect_worker

pytestmark = pytest.mark.timeout(30)


async def test_send_push_stream_done_and_persisted(core: Core) -> None:
    worker = await connect_worker(core)
    user = await core.sign_in(credits=10)
    job_id, conv = await core.send("Explain routing.", tier="pro", metadata=user)
    a = await worker.assignment()
    assert a.job_id == job_id and a.tier == "pro" and a.model == "ashao-pro" and a.attempt == 1
    assert [(m.role, m.content) for m in a.messages] == [("user", "Explain routing.")]
    follower = asyncio.create_task(collect(core, job_id, metadata=user))
    await worker.tokens(job_id, ["Hel", "lo"], offset=0)
    await worker.tokens(job_id, [" world"], offset=2)
    await worker.complete(job_id)
    events = await follower
    assert events == [(1, "token", "Hel"), (2, "token", "lo"), (3, "token", " world"), (4, "done", 3)]
    conv_r = await core.chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conv), metadata=user
    )
    assert [(m.role, m.content) for m in conv_r.messages] == [
        ("user", "Explain routing."),
        ("assistant", "Hello world"),
    ]
    job = (await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job_id), metadata=user)).job
    assert job.state == common_pb2.JOB_STATE_DONE and job.tokens == 3 and job.worker_id == worker.worker_id
    # another caller cannot see it
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job_id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_completion_riding_in_the_token_batch(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send("short")
    await worker.assignment()
    batch = worker_pb2.TokenBatch(
        jobs=[worker_pb2.JobTokens(job_id=job_id, tokens=["all ", "at ", "once"], offset=0)],
        completed=[worker_pb2.JobComplete(job_id=job_id, finish_reason="stop")],
    )
    await worker.call.write(worker_pb2.ConnectRequest(tokens=batch))
    events = await collect(core, job_id)
    assert events == [(1, "token", "all "), (2, "token", "at "), (3, "token", "once"), (4, "done", 3)]
    # completing it again in a later batch is refused for that job only; the stream goes on
    await worker.call.write(
        worker_pb2.ConnectRequest(
            tokens=worker_pb2.TokenBatch(completed=[worker_pb2.JobComplete(job_id=job_id)])
        )
    )
    refusal = await worker.next()
    assert refusal.rejected.job_id == job_id and refusal.rejected.code == "PERMISSION_DENIED"
    second, _ = await core.send("still served")
    assert (await worker.assignment()).job_id == second


async def test_history_is_carried_to_the_worker(core: Core) -> None:
    worker = await connect_worker(core)
    job1, conv = await core.send("first")
    await worker.assignment()
    await worker.tokens(job1, ["reply one"])
    await worker.complete(job1)
    await collect(core, job1)
    job2, conv2 = await core.send("second", conversation_id=conv)
    assert conv2 == conv
    a = await worker.assignment()
    assert a.job_id == job2
    assert [(m.role, m.content) for m in a.messages] == [
        ("user", "first"),
        ("assistant", "reply one"),
        ("user", "second"),
    ]


async def test_late_subscriber_and_resume_after_seq(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send()
    await worker.assignment()
    await worker.tokens(job_id, ["a", "b", "c", "d"])
    await worker.complete(job_id)
    full = await collect(core, job_id)
    assert full == [
        (1, "token", "a"),
        (2, "token", "b"),
        (3, "token", "c"),
        (4, "token", "d"),
        (5, "done", 4),
    ]
    assert await collect(core, job_id, after_seq=2) == full[2:]


async def test_resent_tokens_are_not_counted_twice(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send()
    await worker.assignment()
    await worker.tokens(job_id, ["a", "b"], offset=0)
    await worker.tokens(job_id, ["a", "b", "c"], offset=0)  # a retry overlapping the first run
    await worker.complete(job_id)
    assert [e[2] for e in await collect(core, job_id)] == ["a", "b", "c", 3]


@pytest.mark.parametrize(
    ("tier", "content", "conv", "field"),
    [
        ("platinum", "hi", "", "tier"),
        ("image", "hi", "", "tier"),
        ("free", "", "", "content"),
        ("free", "   ", "", "content"),
        ("free", "x" * 40_000, "", "content"),
        ("free", "hi", "not-an-id", "conversationId"),
        ("free", "hi", "conv_doesnotexist000", "conversationId"),
    ],
)
async def test_bad_input_names_the_field_and_persists_nothing(
    core: Core, tier: str, content: str, conv: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.send(content, tier=tier, conversation_id=conv)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field + ":")
    rows = await core.app.store.fetchall("SELECT COUNT(*) FROM jobs UNION ALL SELECT COUNT(*) FROM messages")
    assert rows == [(0,), (0,)]
    assert core.app.jobs.snapshot().queue_depth == 0


async def test_error_details_carry_reason_and_field(core: Core) -> None:
    from google.rpc import error_details_pb2, status_pb2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.send("hi", tier="nope")
    trailers = dict(info.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    detail = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(detail)
    assert (
        detail.reason == "INVALID_ARGUMENT"
        and detail.domain == "ashao"
        and detail.metadata["field"] == "tier"
    )


async def test_unknown_job_is_not_found(core: Core) -> None:
    for job_id in ("job_doesnotexist1234", "garbage"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(core, job_id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job_id))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_priority_tier_dispatched_first(core: Core) -> None:
    free_job, _ = await core.send("f", tier="free")
    ultra_job, _ = await core.send("u", tier="ultra", metadata=await core.sign_in(credits=10))
    worker = await connect_worker(core, slots=1)
    assert (await worker.assignment()).job_id == ultra_job
    await worker.tokens(ultra_job, ["u"])
    await worker.complete(ultra_job)
    assert (await worker.assignment()).job_id == free_job


async def test_stats_are_live(core: Core) -> None:
    from ashao.v1 import network_pb2

    s = await core.network.GetStats(network_pb2.GetStatsRequest())
    assert (s.active_workers, s.queue_depth, s.jobs_completed) == (0, 0, 0)
    await core.send()
    await core.send()
    s = await core.network.GetStats(network_pb2.GetStatsRequest())
    assert s.queue_depth == 2 and s.active_workers == 0
    worker = await connect_worker(core, slots=1)
    a = await worker.assignment()
    await worker.tokens(a.job_id, ["x"] * 10)
    await worker.complete(a.job_id)
    await collect(core, a.job_id)
    s = await core.network.GetStats(network_pb2.GetStatsRequest())
    assert (s.active_workers, s.queue_depth, s.jobs_completed) == (1, 0, 1)
    # the 10 tokens fall in a whole second as soon as that second is over
    assert core.app.jobs.board.meter.rate(now=time.monotonic() + 1) == pytest.approx(10 / 5)


async def test_send_many_relays_sends_for_their_users(core: Core) -> None:
    user = await core.sign_in(credits=5)
    session = user[0][1].removeprefix("Bearer ")
    call = core.chat.SendMany()
    sends = [
        chat_pb2.RelayedSend(id=1, send=chat_pb2.SendMessageRequest(tier="free", content="a")),
        chat_pb2.RelayedSend(id=2, send=chat_pb2.SendMessageRequest(tier="gold", content="b")),
        chat_pb2.RelayedSend(id=3, send=chat_pb2.SendMessageRequest(tier="pro", content="c")),
        chat_pb2.RelayedSend(
            id=4, send=chat_pb2.SendMessageRequest(tier="pro", content="d"), credential=session
        ),
        chat_pb2.RelayedSend(
            id=5, send=chat_pb2.SendMessageRequest(tier="free", content="e"), credential="sess_forged"
        ),
    ]
    await call.write(chat_pb2.SendManyRequest(sends=sends))
    results: dict[int, chat_pb2.SendResult] = {}
    while len(results) < len(sends):
        msg = await asyncio.wait_for(call.read(), 5)
        assert msg is not grpc.aio.EOF
        results.update({r.id: r for r in msg.results})
    await call.done_writing()
    assert results[1].sent.job_id.startswith("job_")
    assert (results[2].error.code, results[2].error.field) == ("INVALID_ARGUMENT", "tier")
    assert results[3].error.code == "UNAUTHENTICATED"  # a priced tier needs the user's credential
    assert results[4].sent.job_id.startswith("job_")  # charged to the user it names
    assert results[5].error.code == "UNAUTHENTICATED"
    credits = await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=user)
    assert credits.credits == 5 + SIGNUP_GRANT - TIERS["pro"].credit_cost
    job = await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=results[4].sent.job_id), metadata=user)
    assert job.job.tier == "pro"
    assert await asyncio.wait_for(call.read(), 5) is grpc.aio.EOF  # every send answered: the stream ends


async def test_network_info_lists_the_tiers_and_limits(core: Core) -> None:
    r = await core.network.GetNetworkInfo(network_pb2.GetNetworkInfoRequest())
    assert [t.name for t in r.tiers] == ["ultra", "pro", "basic", "image", "free"]
    pro = next(t for t in r.tiers if t.name == "pro")
    assert (pro.model, pro.kind, pro.credit_cost) == ("ashao-pro", network_pb2.TIER_KIND_CHAT, 3)
    image = next(t for t in r.tiers if t.name == "image")
    assert image.kind == network_pb2.TIER_KIND_IMAGE and image.max_tokens == 0
    assert r.max_worker_slots == 1024 and r.max_content_chars == 32_000
