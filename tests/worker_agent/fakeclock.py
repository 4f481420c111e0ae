"""A clock the test moves by hand, for the agent's components that take a ``worker_agent.clock.Clock``."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from tests.helpers.wait import eventually


class FakeTimer:
    """A pending ``call_later`` or ``sleep`` of a ``FakeClock``."""

    __slots__ = ("callback", "done", "is_sleep", "when")

    def __init__(self, when: float, callback: Callable[[], object], *, is_sleep: bool) -> None:
        self.when = when
        self.callback = callback
        self.is_sleep = is_sleep
        self.done = False
        """Called or cancelled."""

    def cancel(self) -> None:
        self.done = True


class FakeClock:
    """Time stands still until ``advance()``, which fires every sleep and timer falling due, in order.

    It starts at a round number so that sums of binary fractions (1/64 s, …) stay exact.
    """

    def __init__(self, start: float = 1024.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, FakeTimer]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []
        """Every duration ``sleep()`` was asked for, in order."""

    def time(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        return self._push(delay, callback, is_sleep=False)

    def _push(self, delay: float, callback: Callable[[], object], *, is_sleep: bool) -> FakeTimer:
        timer = FakeTimer(self._now + max(delay, 0.0), callback, is_sleep=is_sleep)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)  # as asyncio.sleep(0): a turn of the loop, no time
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self._push(seconds, wake, is_sleep=True)
        try:
            await woken
        finally:
            timer.cancel()

    @property
    def sleeping(self) -> int:
        """Sleeps waiting for the clock to move (a woken sleeper no longer counts)."""
        return sum(1 for _, _, t in self._heap if t.is_sleep and not t.done)

    @property
    def timers(self) -> list[float]:
        """When each pending ``call_later`` falls due, earliest first."""
        return sorted(t.when for _, _, t in self._heap if not t.is_sleep and not t.done)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, firing what falls due on the way (each at its own time)."""
        target = self._now + seconds
        while self._heap and self._heap[0][0] <= target:
            when, _, timer = heapq.heappop(self._heap)
            if timer.done:
                continue
            timer.done = True
            self._now = when
            timer.callback()
        self._now = target

    async def turn(self, seconds: float, *, sleepers: int = 1) -> None:
        """Once ``sleepers`` tasks sleep on this clock (each has done what the last move woke it
        for), move it on by ``seconds``."""
        await eventually(lambda: self.sleeping == sleepers)
        self.advance(seconds)
