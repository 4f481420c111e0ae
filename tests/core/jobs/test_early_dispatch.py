"""A send is handed to a worker while the unit admitting it commits; nothing of it outlives a failed
unit, and its end is written only after its admission."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
import pytest

from ashao.v1 import chat_pb2
from core.store import StoreError
from tests.helpers.core import Core, collect, connect_worker
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


def hold_admission(core: Core) -> asyncio.Future[None]:
    """Hold back the store from its next job-admitting unit on: the returned future decides that unit
    (a result lets it through, an exception fails it as the store would); the units submitted after it
    wait behind it and then go on in order, as the store commits them."""
    store = core.app.store
    real = store.submit
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    waiting: list[tuple[Sequence[Any], asyncio.Future[None]]] = []

    def relay(src: asyncio.Future[None], dst: asyncio.Future[None]) -> None:
        exc = src.exception()
        if exc is not None:
            dst.set_exception(exc)
        else:
            dst.set_result(None)

    def submit(statements: Sequence[Any]) -> asyncio.Future[None]:
        if gate.done() or (not waiting and not any("INSERT INTO jobs" in sql for sql, _ in statements)):
            return real(statements)
        out: asyncio.Future[None] = loop.create_future()
        waiting.append((statements, out))
        return out

    def decided(g: asyncio.Future[None]) -> None:
        for i, (statements, out) in enumerate(waiting):
            if i == 0 and g.exception() is not None:
                out.set_exception(g.exception())  # type: ignore[arg-type]
            else:
                real(statements).add_done_callback(lambda f, out=out: relay(f, out))  # type: ignore[misc]

    gate.add_done_callback(decided)
    store.submit = submit  # type: ignore[method-assign]
    return gate


async def test_the_worker_starts_before_the_commit_and_its_end_waits_for_it(core: Core) -> None:
    worker = await connect_worker(core)
    gate = hold_admission(core)
    sending = asyncio.create_task(core.send("early"))
    a = await worker.assignment()  # handed out while the admission is still being committed
    assert not sending.done()
    await worker.tokens(a.job_id, ["quick ", "answer"])
    await worker.complete(a.job_id)
    await asyncio.sleep(0)
    job = core.app.jobs.board.get(a.job_id)
    assert job is not None and job.durable is not None  # ended in memory; its end waits to be written
    gate.set_result(None)
    job_id, _ = await sending
    assert job_id == a.job_id
    events = await collect(core, job_id)
    assert events[-1] == (3, "done", 2)
    stored = (await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job_id))).job
    assert stored.tokens == 2 and stored.worker_id == worker.worker_id


async def test_a_failed_admission_withdraws_the_job_from_its_worker(core: Core) -> None:
    worker = await connect_worker(core)
    gate = hold_admission(core)
    sending = asyncio.create_task(core.send("doomed"))
    a = await worker.assignment()
    await worker.tokens(a.job_id, ["wasted"])
    await eventually(lambda: len(core.app.jobs.board.get(a.job_id).log.tokens) == 1)  # type: ignore[union-attr]
    gate.set_exception(StoreError("disk full"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sending
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    told = await worker.next()
    assert told.cancel.job_id == a.job_id  # the worker is told to stop
    assert core.app.jobs.board.get(a.job_id) is None
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=a.job_id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # the worker is free for the next one
    job_id, _ = await core.send("next")
    assert (await worker.assignment()).job_id == job_id
