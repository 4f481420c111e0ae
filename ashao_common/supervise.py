"""Supervised background loops: one owner and one shape for every long-lived task of a process.

A loop is an async function meant to run for the life of the process (the core's reaper and treasury
snapshots; the facade's subscription and send streams, its keep-alive and watchdog clocks). A ``Supervisor`` runs its loops in
one ``asyncio.TaskGroup``; a loop that raises is logged with its traceback and started again after a
backoff (doubling up to a cap, back to the start once it has run well for a while), and one that
returns is treated the same way: no loop ends silently. Cancellation is the only way out: it is
never swallowed, and ``stop()`` is how the owner asks for it.

Owners shut down in order: stop accepting work, drain what is in flight, then ``stop()`` the loops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

log = logging.getLogger("ashao.supervise")

Loop = Callable[[], Awaitable[None]]
"""A loop: called again after each unexpected end."""


def every(interval_s: float, tick: Callable[[], Awaitable[object]]) -> Loop:
    """A loop that runs ``tick`` every ``interval_s`` seconds (after each interval, never overlapping)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            await tick()

    return loop


class Supervisor:
    """Runs named loops until ``stop()``; restarts each after an unexpected exception or return."""

    def __init__(
        self,
        name: str,
        loops: Mapping[str, Loop],
        *,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        healthy_after_s: float = 10.0,
    ) -> None:
        self.name = name
        self._loops = dict(loops)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._healthy_after_s = healthy_after_s
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.restarts = 0
        """Times a loop was started again after an unexpected end."""

    @property
    def running(self) -> bool:
        """Whether the loops run (started and not stopped)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loops (in a task this supervisor owns and ``stop()`` awaits). Once only."""
        if self._task is not None or self._stopped:
            raise RuntimeError(f"{self.name}: already started")
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def run(self) -> None:
        """Run every loop until cancelled."""
        async with asyncio.TaskGroup() as group:
            for name, loop in self._loops.items():
                group.create_task(self._keep(name, loop), name=f"{self.name}-{name}")

    async def stop(self) -> None:
        """Cancel the loops and wait until they have ended. Idempotent.

        A cancellation of the caller while it waits propagates (the loops are cancelled regardless).
        """
        self._stopped = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error", self.name, exc_info=task.exception())

    async def _keep(self, name: str, loop: Loop) -> None:
        backoff = self._backoff_s
        while True:
            started = time.monotonic()
            error: Exception | None = None
            try:
                await loop()
            except Exception as exc:  # CancelledError is not an Exception: it always propagates
                error = exc
            if time.monotonic() - started >= self._healthy_after_s:
                backoff = self._backoff_s  # it ran well for a while: this is a fresh failure
            how = "failed" if error is not None else "returned"
            log.error(
                "%s: loop %r %s; restarting it in %.2f s", self.name, name, how, backoff, exc_info=error
            )
            self.restarts += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
