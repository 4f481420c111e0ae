"""The synthetic (development/load-test) backend: numbering, continuation, stamps, caps, pacing."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from tests.helpers.wait import eventually
from tests.worker_agent.fakeclock import FakeClock
from worker_agent.backends import ChatRequest, Emit
from worker_agent.backends.synthetic import PacedAnswer, SyntheticBackend

pytestmark = pytest.mark.timeout(30)


def request(prefix: str = "", max_tokens: int = 1000) -> ChatRequest:
    return ChatRequest(job_id="job_t", messages=(), max_tokens=max_tokens, prefix=prefix)


async def run(backend: SyntheticBackend, req: ChatRequest) -> tuple[str, list[str], int]:
    got: list[str] = []
    calls = 0

    def emit(tokens: object) -> None:
        nonlocal calls
        calls += 1
        assert isinstance(tokens, list)
        got.extend(tokens)

    finish = await backend.generate(req, emit)
    return finish, got, calls


TICK = 1 / 256
"""The pacing tick of these tests (a binary fraction: sums of it on the fake clock are exact)."""


async def run_paced(b: SyntheticBackend, clock: FakeClock, req: ChatRequest) -> tuple[str, list[str], int]:
    """``run``, moving the clock on a pacing tick whenever the pacer waits for it."""
    task = asyncio.create_task(run(b, req))
    while True:
        await eventually(lambda: clock.sleeping == 1 or task.done())
        if task.done():
            return task.result()
        clock.advance(TICK)


@pytest.mark.parametrize("rate", [0.0, 2048.0])
async def test_numbering_and_continuation(rate: float) -> None:
    clock = FakeClock()
    b = SyntheticBackend(tokens=40, tokens_per_sec=rate, tick_s=TICK, clock=clock)
    try:
        finish, got, _ = await run_paced(b, clock, request())
        assert finish == "stop" and got == [f"tok{i} " for i in range(40)]
        # a resumed job continues after the words already delivered
        prefix = "".join(f"tok{i} " for i in range(7))
        finish, got, _ = await run_paced(b, clock, request(prefix=prefix))
        assert finish == "stop" and got == [f"tok{i} " for i in range(7, 40)]
    finally:
        await b.aclose()


async def test_unpaced_tokens_come_in_bursts() -> None:
    b = SyntheticBackend(tokens=200)
    _, got, calls = await run(b, request())
    assert len(got) == 200 and calls <= 200 // 16 + 1


async def test_max_tokens_caps_the_answer() -> None:
    b = SyntheticBackend(tokens=16)
    finish, got, _ = await run(b, request(max_tokens=5))
    assert finish == "length" and got == [f"tok{i} " for i in range(5)]
    finish, got, _ = await run(b, request(prefix="tok0 tok1 tok2", max_tokens=2))
    assert finish == "length" and got == ["tok3 ", "tok4 "]
    finish, got, _ = await run(b, request(max_tokens=0))
    assert finish == "length" and got == []


@pytest.mark.parametrize("rate", [0.0, 2048.0])
async def test_a_stop_sequence_ends_the_answer_where_it_would_begin(rate: float) -> None:
    clock = FakeClock()
    b = SyntheticBackend(tokens=16, tokens_per_sec=rate, tick_s=TICK, clock=clock)
    try:
        stop = dataclasses.replace(request(), stop=("tok9", "tok4"))  # the earliest match wins
        finish, got, _ = await run_paced(b, clock, stop)
        assert finish == "stop" and got == [f"tok{i} " for i in range(4)]
        inside = dataclasses.replace(request(), stop=("k2 t",))  # a match inside a token keeps its start
        finish, got, _ = await run_paced(b, clock, inside)
        assert finish == "stop" and got == ["tok0 ", "tok1 ", "to"]
        first = dataclasses.replace(request(), stop=("tok0",))
        assert await run_paced(b, clock, first) == ("stop", [], 0)
        beyond = dataclasses.replace(request(max_tokens=3), stop=("tok5",))  # past the budget: no match
        finish, got, _ = await run_paced(b, clock, beyond)
        assert finish == "length" and got == [f"tok{i} " for i in range(3)]
    finally:
        await b.aclose()


def nanoseconds(clock: FakeClock) -> int:
    """The fake clock read as a wall clock."""
    return round(clock.time() * 1e9)


async def paced(b: SyntheticBackend, clock: FakeClock, ticks: int, tick: float) -> None:
    """Move ``clock`` on by ``ticks`` pacing ticks, each once the pacer has done the one before."""
    for _ in range(ticks):
        after = b.pacing.ticks + 1
        await clock.turn(tick)
        await eventually(lambda after=after: b.pacing.ticks == after or not b.pacing.running)


@pytest.mark.parametrize("rate", [0.0, 64.0])
async def test_stamps_are_emission_times(rate: float) -> None:
    clock = FakeClock()
    tick = 1 / 64
    b = SyntheticBackend(
        tokens=20,
        tokens_per_sec=rate,
        stamp=True,
        tick_s=tick,
        clock=clock,
        wall_clock_ns=lambda: nanoseconds(clock),
    )
    t0 = clock.time()
    try:
        task = asyncio.create_task(run(b, request(prefix="tok0 tok1")))
        if rate:
            await paced(b, clock, 17, tick)
        _, got, _ = await asyncio.wait_for(task, 5)
    finally:
        await b.aclose()
    assert len(got) == 18
    stamps = []
    for i, tok in enumerate(got, start=2):
        assert tok.endswith(" ")
        name, _, stamp = tok.strip().partition("@")
        assert name == f"tok{i}"
        stamps.append(int(stamp))
    # each token carries the time it was emitted: all at once unpaced, token k at t0 + k / rate paced
    spacing = 1 / rate if rate else 0.0
    assert stamps == [round((t0 + k * spacing) * 1e9) for k in range(18)]


async def test_shared_clock_paces_many_jobs() -> None:
    rate, jobs, tick, ticks = 64.0, 200, 1 / 32, 32  # one second on the clock
    clock = FakeClock()
    b = SyntheticBackend(tokens=10_000, tokens_per_sec=rate, tick_s=tick, clock=clock)
    counts = [0] * jobs
    emits = [0] * jobs

    def emitter(k: int) -> Emit:
        def emit(tokens: Sequence[str]) -> None:
            counts[k] += len(tokens)
            emits[k] += 1

        return emit

    tasks = [asyncio.create_task(b.generate(request(), emitter(k))) for k in range(jobs)]
    # the first token of every job comes at once, before the clock moves
    await eventually(lambda: all(counts))
    assert counts == [1] * jobs
    await paced(b, clock, ticks, tick)
    clocks = [t for t in asyncio.all_tasks() if t.get_name() == "ashao-synthetic-clock"]
    assert len(clocks) == 1  # one task paces every job
    assert b.pacing.active == jobs
    # token k is due at k / rate: after one second, tokens 0 to 64 of every job, two per tick
    assert counts == [int(rate) + 1] * jobs
    assert emits == [1 + ticks] * jobs
    assert b.pacing.ticks == ticks  # wakeups are per tick, not per token or per job
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert b.pacing.active == 0
    await paced(b, clock, 1, tick)  # the pacer drops the cancelled answers at its next turn and stops
    await eventually(lambda: not b.pacing.running)
    assert counts == [int(rate) + 1] * jobs
    await b.aclose()


async def test_cancelled_job_stops_emitting() -> None:
    clock = FakeClock()
    tick = 1 / 128
    b = SyntheticBackend(tokens=1000, tokens_per_sec=128, tick_s=tick, clock=clock)
    got: list[str] = []
    task = asyncio.create_task(b.generate(request(), got.extend))
    await paced(b, clock, 10, tick)
    assert len(got) == 11
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.pacing.active == 0
    clock.advance(1.0)  # time in which 128 more tokens were due
    await eventually(lambda: not b.pacing.running)  # the pacer woke, found nothing to pace, stopped
    assert len(got) == 11
    await b.aclose()


async def test_pacing_survives_rounding_at_a_due_time() -> None:
    # (now - t0) * rate rounds just below 8 here although token 8 is due at ``now`` exactly; the clock
    # must count it rather than spin on the same due time forever.
    rate, t0 = 40.0, 7247.575366883224
    now = t0 + 8 / rate
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got: list[str] = []
    paced = PacedAnswer(first=0, total=100, rate=rate, stamp=None, emit=got.extend, t0=t0, done=done)
    nxt = paced.advance(now)
    assert nxt is not None and nxt > now and len(got) == 9
