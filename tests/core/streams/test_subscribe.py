"""The multiplexed Subscribe stream the facade holds for all its SSE clients."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from ashao.v1 import chat_pb2
from tests.helpers.core import Core, connect_worker
from tests.helpers.faults import failing_reads
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


class Sub:
    def __init__(self, core: Core) -> None:
        self.call = core.chat.Subscribe()
        self.events: list[Any] = []

    async def watch(self, sub_id: int, job_id: str, after_seq: int = 0) -> None:
        await self.call.write(
            chat_pb2.SubscribeRequest(watch=chat_pb2.Watch(sub_id=sub_id, job_id=job_id, after_seq=after_seq))
        )

    async def unwatch(self, sub_id: int) -> None:
        await self.call.write(chat_pb2.SubscribeRequest(unwatch=chat_pb2.Unwatch(sub_id=sub_id)))

    async def read_until(self, pred: Any, timeout: float = 5) -> None:
        async def run() -> None:
            while not pred(self.events):
                msg = await self.call.read()
                assert msg is not grpc.aio.EOF
                for ev in msg.events:
                    kind = ev.WhichOneof("kind")
                    if kind == "chunk":
                        self.events.extend(
                            (ev.sub_id, ev.seq + i, "token", t) for i, t in enumerate(ev.chunk.tokens)
                        )
                    elif kind == "done":
                        self.events.append((ev.sub_id, ev.seq, "done", ev.done.tokens))
                    elif kind == "error":
                        self.events.append((ev.sub_id, ev.seq, "error", ev.error.reason))
                    elif kind == "accepted":
                        self.events.append((ev.sub_id, 0, "accepted", None))
                    else:
                        self.events.append((ev.sub_id, 0, "rejected", ev.rejected.code))

        await asyncio.wait_for(run(), timeout)

    def of(self, sub_id: int) -> list[Any]:
        return [e[1:] for e in self.events if e[0] == sub_id]


def ended(sub_ids: set[int]) -> Any:
    return lambda evs: {e[0] for e in evs if e[2] in ("done", "error", "rejected")} >= sub_ids


async def test_many_jobs_one_stream_with_acks_first(core: Core) -> None:
    worker = await connect_worker(core, slots=8)
    jobs = [(await core.send(f"m{i}"))[0] for i in range(5)]
    for _ in jobs:
        await worker.assignment()
    sub = Sub(core)
    for i, job_id in enumerate(jobs, start=1):
        await sub.watch(i, job_id)
    await sub.watch(99, "job_unknown000000000")
    await sub.read_until(lambda evs: len([e for e in evs if e[2] in ("accepted", "rejected")]) == 6)
    for i, job_id in enumerate(jobs):
        await worker.tokens(job_id, [f"a{i}", f"b{i}"])
        await worker.complete(job_id)
    await sub.read_until(ended({1, 2, 3, 4, 5, 99}))
    assert sub.of(99) == [(0, "rejected", "NOT_FOUND")]
    for i in range(5):
        assert sub.of(i + 1) == [
            (0, "accepted", None),
            (1, "token", f"a{i}"),
            (2, "token", f"b{i}"),
            (3, "done", 2),
        ]
    sub.call.cancel()


async def test_resume_after_seq_and_replay_of_finished_job(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send()
    await worker.assignment()
    await worker.tokens(job_id, ["a", "b", "c"])
    await worker.complete(job_id)
    await eventually(lambda: core.app.jobs.board.get(job_id) is None)
    sub = Sub(core)
    await sub.watch(1, job_id, after_seq=2)
    await sub.watch(2, job_id)
    await sub.read_until(ended({1, 2}))
    assert sub.of(1) == [(0, "accepted", None), (3, "token", "c"), (4, "done", 3)]
    assert sub.of(2)[-1] == (4, "done", 3) and len(sub.of(2)) == 5
    sub.call.cancel()


async def test_unwatch_and_disconnect_release_the_subscription(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send()
    await worker.assignment()
    job_log = core.app.jobs.board.get(job_id).log
    sub = Sub(core)
    await sub.watch(1, job_id)
    await sub.watch(2, job_id)
    await sub.read_until(lambda evs: len(evs) == 2)
    assert job_log.listeners == 2
    await sub.unwatch(1)
    await eventually(lambda: job_log.listeners == 1)
    sub.call.cancel()
    await eventually(lambda: job_log.listeners == 0)


async def test_backlog_is_coalesced_into_few_messages(core: Core) -> None:
    worker = await connect_worker(core)
    job_id, _ = await core.send()
    await worker.assignment()
    for i in range(200):
        await worker.tokens(job_id, [f"t{i} "])
    await worker.complete(job_id)
    await eventually(lambda: core.app.jobs.board.get(job_id) is None)
    call = core.chat.Subscribe()
    await call.write(chat_pb2.SubscribeRequest(watch=chat_pb2.Watch(sub_id=7, job_id=job_id)))
    messages = []
    while True:
        msg = await asyncio.wait_for(call.read(), 5)
        messages.append(msg)
        if any(ev.HasField("done") for ev in msg.events):
            break
    tokens = [t for m in messages for ev in m.events if ev.HasField("chunk") for t in ev.chunk.tokens]
    assert tokens == [f"t{i} " for i in range(200)]
    assert len(messages) <= 2  # the ack and the whole backlog, not 200 messages
    call.cancel()


async def test_a_store_error_refuses_one_watch_and_the_stream_serves_the_next(core: Core) -> None:
    """A watch on a finished job is read from the store; if that read fails, that watch is refused
    (UNAVAILABLE) and the same stream goes on serving watches."""
    worker = await connect_worker(core, slots=1)
    sub = Sub(core)
    try:
        with failing_reads(core.app.store, when="FROM jobs WHERE id") as failed:
            await sub.watch(1, "job_" + "A" * 22)  # well-formed, unknown: answered from the store
            await sub.read_until(lambda evs: any(e[0] == 1 for e in evs))
        assert failed and sub.of(1) == [(0, "rejected", "UNAVAILABLE")]
        fresh, _ = await core.send("later")
        await sub.watch(2, fresh)
        await worker.assignment()
        await worker.tokens(fresh, ["y"])
        await worker.complete(fresh)
        await sub.read_until(ended({2}))
        assert sub.of(2) == [(0, "accepted", None), (1, "token", "y"), (2, "done", 1)]
    finally:
        sub.call.cancel()


async def test_a_job_that_just_ended_here_is_watched_without_a_read_of_the_store(core: Core) -> None:
    """A stream opened just after its job ended (a short answer, or the caller came late) is answered
    from the finished log this core keeps, which says what the store says once the end is durable."""
    worker = await connect_worker(core, slots=1)
    job, _ = await core.send("hi")
    await worker.assignment()
    await worker.tokens(job, ["a", "b"])
    await worker.complete(job)
    await eventually(lambda: core.app.jobs.board.get(job) is None)  # its end is durable
    sub = Sub(core)
    try:
        with failing_reads(core.app.store, when="FROM jobs WHERE id") as failed:
            await sub.watch(1, job)
            await sub.read_until(ended({1}))
        assert not failed
        assert sub.of(1) == [(0, "accepted", None), (1, "token", "a"), (2, "token", "b"), (3, "done", 2)]
    finally:
        sub.call.cancel()
