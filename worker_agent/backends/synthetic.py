"""The synthetic backend — for development and load tests only, it runs no model.

An answer is the tokens ``"tok{i} "`` for ``i`` from ``start`` to ``tokens - 1``, where ``start`` is
the number of words a previous attempt already delivered (so a job resumed on another worker
continues the numbering), capped by the job's ``max_tokens``, and cut where a stop sequence of the job
would begin. With ``stamp`` each token is ``"tok{i}@{time.time_ns()} "``, stamped when emitted, so a
benchmark can measure emit→receive lag.

Paced jobs (``tokens_per_sec > 0``) are all driven by one shared clock task that wakes every few
milliseconds and emits whatever each job has due: 500 jobs at 50 tokens/s cost ~200 wakeups a
second in total, not 25,000. Pacing follows the ``Clock`` the backend is given (the event loop's by
default) and stamps the wall clock it is given, so a test can drive both by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import Callable

from worker_agent.backends import ChatRequest, Emit
from worker_agent.clock import LOOP_CLOCK, Clock

BURST = 16
"""Tokens an unpaced job emits before yielding to the event loop."""


def _token(i: int, stamp: Callable[[], int] | None) -> str:
    return f"tok{i}@{stamp()} " if stamp is not None else f"tok{i} "


def until_stop(start: int, end: int, stop: tuple[str, ...]) -> tuple[int, str, bool]:
    """Where the answer ``tok{start}`` … ``tok{end - 1}`` ends given stop sequences (matched against the
    unstamped text): ``(end of the whole tokens before the first match, the part of the next token
    before it, whether one matched)``."""
    tokens = [_token(i, None) for i in range(start, end)]
    text = "".join(tokens)
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not found:
        return end, "", False
    cut = min(found)
    length = 0
    for n, token in enumerate(tokens):
        if length + len(token) > cut:
            return start + n, text[length:cut], True
        length += len(token)
    return end, "", True  # (cannot happen: a match starts inside the text)


class PacedAnswer:
    """One paced answer: token ``k`` (0-based within this attempt) is due at ``t0 + k / rate``.

    ``stamp``, when given, reads the wall clock (ns) each token is stamped with as it is emitted."""

    __slots__ = ("done", "emit", "emitted", "first", "rate", "stamp", "t0", "total")

    def __init__(
        self,
        *,
        first: int,
        total: int,
        rate: float,
        stamp: Callable[[], int] | None,
        emit: Emit,
        t0: float,
        done: asyncio.Future[None],
    ) -> None:
        self.first = first
        self.total = total
        self.rate = rate
        self.stamp = stamp
        self.emit = emit
        self.t0 = t0
        self.emitted = 0
        self.done = done

    def advance(self, now: float) -> float | None:
        """Emit what is due at ``now``; the time the next token is due, or None when finished."""
        if self.done.done():  # cancelled: its job is gone
            return None
        due = min(self.total, math.floor((now - self.t0) * self.rate) + 1)
        # Rounding may leave token ``due`` due at ``now`` by the formula below: count it, so the time
        # returned is always in the future and the clock never spins on one answer.
        while due < self.total and self.t0 + due / self.rate <= now:
            due += 1
        if due > self.emitted:
            start = self.first + self.emitted
            self.emit([_token(i, self.stamp) for i in range(start, self.first + due)])
            self.emitted = due
        if self.emitted >= self.total:
            self.done.set_result(None)
            return None
        return self.t0 + self.emitted / self.rate


class PacingClock:
    """One task that paces every running synthetic job; it runs only while some job is paced."""

    def __init__(self, *, tick_s: float = 0.005, clock: Clock = LOOP_CLOCK) -> None:
        self._tick = tick_s
        self._clock = clock
        self._heap: list[tuple[float, int, PacedAnswer]] = []
        self._seq = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        """Wakeups so far (for tests and curiosity)."""

    @property
    def active(self) -> int:
        """Paced answers still running."""
        return sum(1 for _, _, p in self._heap if not p.done.done())

    @property
    def running(self) -> bool:
        """Whether its task runs (it ends once no answer is left to pace)."""
        return self._task is not None and not self._task.done()

    def add(self, paced: PacedAnswer) -> None:
        """Emit the first token at once (time to first token), then pace the rest from the clock."""
        nxt = paced.advance(paced.t0)
        if nxt is None:
            return
        heapq.heappush(self._heap, (nxt, next(self._seq), paced))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ashao-synthetic-clock")

    async def _run(self) -> None:
        heap = self._heap
        while heap:
            await self._clock.sleep(self._tick)
            self.ticks += 1
            now = self._clock.time()
            while heap and heap[0][0] <= now:
                _, seq, paced = heapq.heappop(heap)
                nxt = paced.advance(now)
                if nxt is not None:
                    heapq.heappush(heap, (nxt, seq, paced))

    async def aclose(self) -> None:
        """Stop the clock (running answers are left unfinished)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._heap.clear()


class SyntheticBackend:
    """Counts instead of thinking. Development and load tests only."""

    continues_prefix = True
    """It counts on from the prefix's last token."""

    def __init__(
        self,
        *,
        tokens: int = 16,
        tokens_per_sec: float = 0.0,
        stamp: bool = False,
        tick_s: float = 0.005,
        clock: Clock = LOOP_CLOCK,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``clock`` paces the answers; ``wall_clock_ns`` is what ``stamp`` stamps them with."""
        self._tokens = tokens
        self._rate = tokens_per_sec
        self._stamp = wall_clock_ns if stamp else None
        self._clock = clock
        self.pacing = PacingClock(tick_s=tick_s, clock=clock)
        """The shared clock task of paced answers."""

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        """Emit ``tok{start}`` … up to the configured length or ``max_tokens``; "length" when capped.
        A stop sequence of the request ends the answer where it would begin ("stop")."""
        start = len(request.prefix.split())
        end = min(self._tokens, start + max(0, request.max_tokens))
        finish = "length" if end < self._tokens else "stop"
        tail = ""
        if request.stop:
            end, tail, stopped = until_stop(start, end, request.stop)
            finish = "stop" if stopped else finish
        if end > start:
            await self._emit(start, end, emit)
        if tail:
            emit([tail])
        return finish

    async def _emit(self, start: int, end: int, emit: Emit) -> None:
        if self._rate <= 0:
            i = start
            while i < end:
                j = min(end, i + BURST)
                emit([_token(k, self._stamp) for k in range(i, j)])
                i = j
                if i < end:
                    await asyncio.sleep(0)  # let other jobs and the writer run between bursts
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        paced = PacedAnswer(
            first=start,
            total=end - start,
            rate=self._rate,
            stamp=self._stamp,
            emit=emit,
            t0=self._clock.time(),
            done=done,
        )
        try:
            self.pacing.add(paced)
            await done
        finally:
            if not done.done():
                done.cancel()  # the clock drops it at its next turn

    async def aclose(self) -> None:
        """Stop the shared clock task."""
        await self.pacing.aclose()
