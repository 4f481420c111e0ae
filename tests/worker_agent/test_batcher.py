"""The single writer: coalescing, first-token and bounded flushes, offsets, and message order.

The batcher keeps time by a ``FakeClock``: a flush interval passes only when the test says so, and
every write notes the time on that clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ashao.v1 import worker_pb2
from tests.helpers.wait import eventually
from tests.worker_agent.fakeclock import FakeClock
from worker_agent.batcher import TokenBatcher

pytestmark = pytest.mark.timeout(10)

INTERVAL = 0.0625
"""The flush interval of these tests (a binary fraction: sums of it on the fake clock are exact)."""


class Recorder:
    """Stands in for the writing half of a call; notes what was written and when, on ``clock``."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.messages: list[worker_pb2.ConnectRequest] = []
        self.times: list[float] = []
        self.half_closed = False
        self.writing = False

    async def write(self, request: worker_pb2.ConnectRequest) -> None:
        assert not self.writing, "concurrent writes"
        assert not self.half_closed
        self.writing = True
        await asyncio.sleep(0)  # a write gives the loop a turn, as a real one does
        self.messages.append(request)
        self.times.append(self.clock.time())
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


class Pair:
    def __init__(self, batcher: TokenBatcher, rec: Recorder, clock: FakeClock) -> None:
        self.b, self.rec, self.clock = batcher, rec, clock

    async def written(self, n: int) -> None:
        """Wait until ``n`` messages have been written."""
        await eventually(lambda: len(self.rec.messages) >= n)
        assert len(self.rec.messages) == n, self.rec.kinds()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    clock = FakeClock()
    rec = Recorder(clock)
    b = TokenBatcher(rec, flush_interval_s=INTERVAL, max_pending_tokens=100, clock=clock)
    writer = asyncio.create_task(b.run())
    try:
        yield Pair(b, rec, clock)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_first_token_at_once_then_one_batch_per_interval(pair: Pair) -> None:
    b, rec, clock = pair.b, pair.rec, pair.clock
    t0 = clock.time()
    emit = b.open("job_a")
    emit(["a0"])
    await pair.written(1)
    assert rec.runs() == [("job_a", 0, ["a0"])] and rec.times == [t0]  # no time had to pass

    async def backend() -> None:
        """Emits a token every INTERVAL / 8 on the clock: the writer may run between any two."""
        for i in range(1, 6):
            await clock.sleep(INTERVAL / 8)
            emit([f"a{i}"])

    producing = asyncio.create_task(backend())
    for _ in range(5):
        await clock.turn(INTERVAL / 8)
    await asyncio.wait_for(producing, 5)
    t1 = t0 + INTERVAL / 8  # when the first held token came
    assert clock.timers == [t1 + INTERVAL]  # one flush, an interval after the oldest held token
    clock.advance(t1 + INTERVAL - clock.time())
    await pair.written(2)
    assert rec.runs()[1:] == [("job_a", 1, ["a1", "a2", "a3", "a4", "a5"])]
    assert rec.times == [t0, t1 + INTERVAL]  # held tokens went out together, exactly then


async def test_every_job_rides_in_one_batch(pair: Pair) -> None:
    b, rec, clock = pair.b, pair.rec, pair.clock
    t0 = clock.time()
    emits = {j: b.open(j) for j in ("job_a", "job_b", "job_c")}
    for j, emit in emits.items():
        emit([f"{j}:0"])
    await pair.written(1)
    assert len(rec.messages[0].tokens.jobs) == 3  # first tokens coalesce too
    for i in range(1, 4):
        for j, emit in emits.items():
            emit([f"{j}:{i}"])
    clock.advance(INTERVAL)
    await pair.written(2)
    assert [(jt.job_id, jt.offset, len(jt.tokens)) for jt in rec.messages[1].tokens.jobs] == [
        ("job_a", 1, 3),
        ("job_b", 1, 3),
        ("job_c", 1, 3),
    ]
    assert rec.times == [t0, t0 + INTERVAL]
    assert b.batches_sent == 2 and b.tokens_sent == 12


async def test_too_many_pending_tokens_flush_early(pair: Pair) -> None:
    b, rec, clock = pair.b, pair.rec, pair.clock
    t0 = clock.time()
    emit = b.open("job_a")
    emit(["x"])
    await pair.written(1)
    emit(["y"] * 150)
    await pair.written(2)
    assert [len(t) for _, _, t in rec.runs()] == [1, 150]
    assert rec.times == [t0, t0] and clock.timers == []  # no interval had to pass


async def test_completion_follows_the_last_tokens(pair: Pair) -> None:
    b, rec = pair.b, pair.rec
    a, c = b.open("job_a"), b.open("job_c")
    a(["a0"])
    c(["c0"])
    await pair.written(1)
    a(["a1", "a2"])
    c(["c1"])
    b.complete("job_a", "stop")
    a(["late"])  # after completion: ignored
    b.fail("job_c", "boom", retryable=True)
    await pair.written(3)
    # the completion rides in the batch that carries the job's last tokens; a failure follows it
    assert rec.kinds() == ["tokens", "tokens", "failed"]
    assert rec.runs()[2:] == [("job_a", 1, ["a1", "a2"]), ("job_c", 1, ["c1"])]
    assert [(d.job_id, d.finish_reason) for d in rec.messages[1].tokens.completed] == [("job_a", "stop")]
    assert rec.messages[2].failed.retryable and rec.messages[2].failed.message == "boom"
    assert len(set(rec.times)) == 1  # none of it waited for the interval


async def test_a_completion_alone_still_goes_out(pair: Pair) -> None:
    b, rec = pair.b, pair.rec
    a = b.open("job_a")
    a(["only"])
    await pair.written(1)
    b.complete("job_a", "length")
    await pair.written(2)
    assert rec.kinds() == ["tokens", "tokens"]
    assert list(rec.messages[1].tokens.jobs) == []
    assert [d.job_id for d in rec.messages[1].tokens.completed] == ["job_a"]


async def test_discarded_job_sends_nothing_more(pair: Pair) -> None:
    b, rec, clock = pair.b, pair.rec, pair.clock
    a = b.open("job_a")
    a(["a0"])
    await pair.written(1)
    a(["a1"])
    b.discard("job_a")
    a(["a2"])
    clock.advance(INTERVAL)  # the flush a1 was held for comes, with nothing to send
    # a new attempt of the same job on this stream starts at offset 0 again
    again = b.open("job_a")
    again(["b0"])
    await eventually(lambda: rec.runs()[-1] == ("job_a", 0, ["b0"]))
    assert rec.runs() == [("job_a", 0, ["a0"]), ("job_a", 0, ["b0"])]  # writes keep order: no a1, a2


async def test_close_flushes_then_half_closes() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    b = TokenBatcher(rec, flush_interval_s=INTERVAL, clock=clock)
    writer = asyncio.create_task(b.run())
    emit = b.open("job_a")
    emit(["a0"])
    await eventually(lambda: len(rec.messages) == 1)
    emit(["a1"])
    b.send(worker_pb2.ConnectRequest(drain=worker_pb2.WorkerDrain()))
    b.close()
    await asyncio.wait_for(writer, 5)
    assert rec.kinds() == ["tokens", "tokens", "drain"] and rec.half_closed
    assert clock.timers == []  # the held token did not wait for its flush


async def test_a_token_that_is_not_utf8_does_not_break_the_stream(pair: Pair) -> None:
    b, rec = pair.b, pair.rec
    b.open("job_a")(["ok", "bad\ud800"])
    await pair.written(1)
    assert rec.runs() == [("job_a", 0, ["ok", "bad?"])]
