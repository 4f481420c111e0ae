"""The synthetic (development/load-test) backend: numbering, continuation, stamps, caps, pacing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

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


@pytest.mark.parametrize("rate", [0.0, 2000.0])
async def test_numbering_and_continuation(rate: float) -> None:
    b = SyntheticBackend(tokens=40, tokens_per_sec=rate)
    try:
        finish, got, _ = await run(b, request())
        assert finish == "stop" and got == [f"tok{i} " for i in range(40)]
        # a resumed job continues after the words already delivered
        prefix = "".join(f"tok{i} " for i in range(7))
        finish, got, _ = await run(b, request(prefix=prefix))
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


@pytest.mark.parametrize("rate", [0.0, 500.0])
async def test_stamps_are_emission_times(rate: float) -> None:
    b = SyntheticBackend(tokens=20, tokens_per_sec=rate, stamp=True)
    before = time.time_ns()
    try:
        _, got, _ = await run(b, request(prefix="tok0 tok1"))
    finally:
        await b.aclose()
    after = time.time_ns()
    assert len(got) == 18
    stamps = []
    for i, tok in enumerate(got, start=2):
        assert tok.endswith(" ")
        name, _, stamp = tok.strip().partition("@")
        assert name == f"tok{i}"
        stamps.append(int(stamp))
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after
    if rate:
        assert (stamps[-1] - stamps[0]) / 1e9 >= 17 / rate * 0.8  # spread over the pacing, not all at once


async def test_shared_clock_paces_many_jobs() -> None:
    rate, jobs, seconds = 50.0, 200, 1.0
    b = SyntheticBackend(tokens=10_000, tokens_per_sec=rate, tick_s=0.005)
    counts = [0] * jobs
    first_at: list[float] = [0.0] * jobs
    loop = asyncio.get_running_loop()

    def emitter(k: int) -> Emit:
        def emit(tokens: Sequence[str]) -> None:
            if not counts[k]:
                first_at[k] = loop.time()
            counts[k] += len(tokens)

        return emit

    started = loop.time()
    tasks = [asyncio.create_task(b.generate(request(), emitter(k))) for k in range(jobs)]
    await asyncio.sleep(seconds)
    elapsed = loop.time() - started
    clocks = [t for t in asyncio.all_tasks() if t.get_name() == "ashao-synthetic-clock"]
    assert len(clocks) == 1  # one task paces every job
    assert b.clock.active == jobs
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # the first token is immediate; then ~rate tokens per second per job
    assert max(first_at) - started < 0.2
    expected = rate * elapsed
    for c in counts:
        assert expected * 0.8 <= c <= expected + 2, (c, expected)
    # wakeups are per tick, not per token
    assert b.clock.ticks <= elapsed / 0.005 + 5
    await asyncio.sleep(0.05)
    assert b.clock.active == 0
    await b.aclose()


async def test_cancelled_job_stops_emitting() -> None:
    b = SyntheticBackend(tokens=1000, tokens_per_sec=100)
    got: list[str] = []
    task = asyncio.create_task(b.generate(request(), got.extend))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    n = len(got)
    await asyncio.sleep(0.1)
    assert len(got) == n and b.clock.active == 0
    await b.aclose()


async def test_pacing_survives_rounding_at_a_due_time() -> None:
    # (now - t0) * rate rounds just below 8 here although token 8 is due at ``now`` exactly; the clock
    # must count it rather than spin on the same due time forever.
    rate, t0 = 40.0, 7247.575366883224
    now = t0 + 8 / rate
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    got: list[str] = []
    paced = PacedAnswer(first=0, total=100, rate=rate, stamp=False, emit=got.extend, t0=t0, done=done)
    nxt = paced.advance(now)
    assert nxt is not None and nxt > now and len(got) == 9
