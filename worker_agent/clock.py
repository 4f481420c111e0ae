"""The time the agent keeps its own schedule by: the event loop's, or one a test moves by hand.

Token flushes, synthetic pacing, heartbeats, reconnect backoff and the drain timeout all read the
time through a ``Clock``, so a test can move time on step by step and count what happened instead
of measuring seconds. Deadlines on I/O (gRPC calls, the model server, the shutdown grace) bound real
waits on other processes and stay on the real clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A pending ``call_later``."""

    def cancel(self) -> None:
        """Do not call it (a no-op once it has been called)."""
        ...


class Clock(Protocol):
    """Monotonic time, sleeping and timers."""

    def time(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` once ``delay`` seconds have passed."""
        ...


class LoopClock:
    """The running event loop's clock."""

    def time(self) -> float:
        """The loop's monotonic seconds."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep``."""
        await asyncio.sleep(seconds)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """The loop's ``call_later``."""
        return asyncio.get_running_loop().call_later(delay, callback)


LOOP_CLOCK = LoopClock()
"""The default of every component that takes a clock."""
