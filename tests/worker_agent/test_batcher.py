"""The single writer: coalescing, first-token and bounded flushes, offsets, and message order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ashao.v1 import worker_pb2
from worker_agent.batcher import TokenBatcher

pytestmark = pytest.mark.timeout(10)


class Recorder:
    """Stands in for the writing half of a call; notes what was written and when."""

    def __init__(self) -> None:
        self.messages: list[worker_pb2.ConnectRequest] = []
        self.times: list[float] = []
        self.half_closed = False
        self.writing = False

    async def write(self, request: worker_pb2.ConnectRequest) -> None:
        assert not self.writing, "concurrent writes"
        assert not self.half_closed
        self.writing = True
        await asyncio.sleep(0)
        self.messages.append(request)
        self.times.append(asyncio.get_running_loop().time())
        self.writing = False

    async def done_writing(self) -> None:
        self.half_closed = True

    def kinds(self) -> list[str | None]:
        return [m.WhichOneof("msg") for m in self.messages]

    def runs(self) -> list[tuple[str, int, list[str]]]:
        return [
            (jt.job_id, jt.offset, list(jt.tokens))
            for m in self.messages
            if m.HasField("tokens")
            for jt in m.tokens.jobs
        ]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[TokenBatcher, Recorder]]:
    rec = Recorder()
    b = TokenBatcher(rec, flush_interval_s=0.05, max_pending_tokens=100)
    writer = asyncio.create_task(b.run())
    try:
        yield b, rec
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_first_token_at_once_then_one_batch_per_interval(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    loop = asyncio.get_running_loop()
    emit = b.open("job_a")
    t0 = loop.time()
    emit(["a0"])
    await asyncio.sleep(0.01)
    assert rec.runs() == [("job_a", 0, ["a0"])] and rec.times[0] - t0 < 0.01  # no waiting for the interval
    for i in range(1, 6):
        emit([f"a{i}"])  # held: they go out together
        await asyncio.sleep(0.001)
    assert len(rec.messages) == 1
    await asyncio.sleep(0.08)
    assert rec.runs()[1:] == [("job_a", 1, ["a1", "a2", "a3", "a4", "a5"])]
    assert rec.times[1] - rec.times[0] >= 0.04


async def test_every_job_rides_in_one_batch(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    emits = {j: b.open(j) for j in ("job_a", "job_b", "job_c")}
    for j, emit in emits.items():
        emit([f"{j}:0"])
    await asyncio.sleep(0.01)
    assert len(rec.messages) == 1 and len(rec.messages[0].tokens.jobs) == 3  # first tokens coalesce too
    for i in range(1, 4):
        for j, emit in emits.items():
            emit([f"{j}:{i}"])
    await asyncio.sleep(0.08)
    assert len(rec.messages) == 2
    assert [(jt.job_id, jt.offset, len(jt.tokens)) for jt in rec.messages[1].tokens.jobs] == [
        ("job_a", 1, 3),
        ("job_b", 1, 3),
        ("job_c", 1, 3),
    ]
    assert b.batches_sent == 2 and b.tokens_sent == 12


async def test_too_many_pending_tokens_flush_early(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    emit = b.open("job_a")
    emit(["x"])
    await asyncio.sleep(0.01)
    emit(["y"] * 150)
    await asyncio.sleep(0.01)  # far less than the 50 ms interval
    assert [len(t) for _, _, t in rec.runs()] == [1, 150]


async def test_completion_follows_the_last_tokens(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    a, c = b.open("job_a"), b.open("job_c")
    a(["a0"])
    c(["c0"])
    await asyncio.sleep(0.01)
    a(["a1", "a2"])
    c(["c1"])
    b.complete("job_a", "stop")
    a(["late"])  # after completion: ignored
    b.fail("job_c", "boom", retryable=True)
    await asyncio.sleep(0.01)
    # the completion rides in the batch that carries the job's last tokens; a failure follows it
    assert rec.kinds() == ["tokens", "tokens", "failed"]
    assert rec.runs()[2:] == [("job_a", 1, ["a1", "a2"]), ("job_c", 1, ["c1"])]
    assert [(d.job_id, d.finish_reason) for d in rec.messages[1].tokens.completed] == [("job_a", "stop")]
    assert rec.messages[2].failed.retryable and rec.messages[2].failed.message == "boom"


async def test_a_completion_alone_still_goes_out(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    a = b.open("job_a")
    a(["only"])
    await asyncio.sleep(0.01)
    b.complete("job_a", "length")
    await asyncio.sleep(0.01)
    assert rec.kinds() == ["tokens", "tokens"]
    assert list(rec.messages[1].tokens.jobs) == []
    assert [d.job_id for d in rec.messages[1].tokens.completed] == ["job_a"]


async def test_discarded_job_sends_nothing_more(pair: tuple[TokenBatcher, Recorder]) -> None:
    b, rec = pair
    a = b.open("job_a")
    a(["a0"])
    await asyncio.sleep(0.01)
    a(["a1"])
    b.discard("job_a")
    a(["a2"])
    await asyncio.sleep(0.08)
    assert rec.runs() == [("job_a", 0, ["a0"])]
    # a new attempt of the same job on this stream starts at offset 0 again
    again = b.open("job_a")
    again(["b0"])
    await asyncio.sleep(0.01)
    assert rec.runs()[-1] == ("job_a", 0, ["b0"])


async def test_close_flushes_then_half_closes() -> None:
    rec = Recorder()
    b = TokenBatcher(rec, flush_interval_s=10.0)
    writer = asyncio.create_task(b.run())
    emit = b.open("job_a")
    emit(["a0"])
    await asyncio.sleep(0.01)
    emit(["a1"])
    b.send(worker_pb2.ConnectRequest(drain=worker_pb2.WorkerDrain()))
    b.close()
    await asyncio.wait_for(writer, 1)
    assert rec.kinds() == ["tokens", "tokens", "drain"] and rec.half_closed


async def test_a_token_that_is_not_utf8_does_not_break_the_stream(
    pair: tuple[TokenBatcher, Recorder],
) -> None:
    b, rec = pair
    b.open("job_a")(["ok", "bad\ud800"])
    await asyncio.sleep(0.01)
    assert rec.runs() == [("job_a", 0, ["ok", "bad?"])]
