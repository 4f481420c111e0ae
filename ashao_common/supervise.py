"""Background loops with an owner: started together, restarted when they fail, stopped in order.

Every long-lived loop of a process (the core's reaper and treasury snapshots, the facade's stream to
the core and its SSE watchdog, …) runs under a ``Supervisor``. A loop that raises unexpectedly is
logged with its traceback and started again after a backoff (doubling up to a bound), so a bug in one
pass never silently stops the work for good. Cancellation is never swallowed. ``stop()`` is
idempotent: it cancels every loop and waits for each to end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("ashao.supervise")

Body = Callable[[], Awaitable[object]]


class Supervisor:
    """Owns a set of named loops."""

    def __init__(self, name: str, *, backoff_s: float = 0.1, max_backoff_s: float = 5.0) -> None:
        self.name = name
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._loops: list[tuple[str, Body]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.restarts: dict[str, int] = {}
        """How often each loop was restarted after an unexpected failure."""

    def loop(self, name: str, body: Body) -> None:
        """Run ``body`` for as long as the supervisor runs; start it again if it fails or returns."""
        self._add(name, body)

    def every(self, name: str, interval_s: float, tick: Body) -> None:
        """Run ``tick`` every ``interval_s`` seconds (after each interval, never overlapping)."""

        async def body() -> None:
            while True:
                await asyncio.sleep(interval_s)
                await tick()

        self._add(name, body)

    def _add(self, name: str, body: Body) -> None:
        self._loops.append((name, body))
        self.restarts[name] = 0
        if self._tasks:  # already started: start this one too
            self._tasks.append(self._spawn(name, body))

    def start(self) -> None:
        """Start every loop."""
        if not self._tasks:
            self._tasks = [self._spawn(name, body) for name, body in self._loops]

    def _spawn(self, name: str, body: Body) -> asyncio.Task[None]:
        return asyncio.create_task(self._supervise(name, body), name=f"{self.name}-{name}")

    async def _supervise(self, name: str, body: Body) -> None:
        backoff = self._backoff_s
        while True:
            try:
                await body()
                log.warning("%s: loop %s ended; starting it again", self.name, name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: loop %s failed; starting it again in %.1f s", self.name, name, backoff)
            self.restarts[name] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    @property
    def running(self) -> bool:
        """Whether the loops were started and not stopped."""
        return bool(self._tasks)

    async def stop(self) -> None:
        """Cancel every loop and wait for each to end. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
