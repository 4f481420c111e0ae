"""Serving job events to readers: many jobs over one stream (the facade), or one job per stream.

Each subscription is a cursor into its job's shared log. A change to a log only marks the
subscription dirty; the stream's single writer then takes everything new from every dirty
subscription into ONE message. While a write is in flight, further tokens simply accumulate in the
log, so under load consecutive tokens coalesce instead of queueing up as separate messages.

The writer is also paced (``ashao_common.pacing``): after a message, the next one waits for the
stream's window, which follows the tokens per second the stream carries (nothing at a trickle, tens
of milliseconds with thousands of streams running). Every event costs a little at each end however
few tokens it carries, so under load a subscription's tokens go in fewer, fuller events. A watch's
answer and a subscription's first tokens (time to first token) never wait for the window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ashao_common.pacing import Pace
from core.errors import AshaoError, as_domain_error
from core.streams.log import Cursor, Events, JobLog

OpenLog = Callable[[str, Any], Awaitable[tuple[JobLog, str]]]
"""Opens a job's log for a caller (its principal): (log, the job's state); raises a domain error."""
Resolve = Callable[[], Awaitable[Any]]
"""Resolves the caller a watch is for (raising UNAUTHENTICATED for a bad credential)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A watch started."""

    sub_id: int
    state: str
    """The job's state when the watch started (``JobState`` value)."""
    tokens: int
    """Tokens in the job's log when the watch started."""
    answer: int = 0
    """The attempt whose answer those tokens are."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A watch was refused."""

    sub_id: int
    code: str
    message: str


Answer = Accepted | Rejected
"""A watch's answer."""


class _Sub:
    __slots__ = ("cursor", "fresh", "listener")

    def __init__(self, cursor: Cursor, listener: Callable[[], None]) -> None:
        self.cursor = cursor
        self.listener = listener
        self.fresh = True
        """Nothing taken yet: its first events go at once."""


class Multiplexer:
    """The subscriptions of one Subscribe stream."""

    def __init__(
        self,
        open_log: OpenLog,
        *,
        max_tokens_per_message: int,
        max_watches: int = 100_000,
        pace: Pace | None = None,
    ) -> None:
        self._open_log = open_log
        self.pace = pace or Pace(max_s=0.0, full_rate=0.0)
        """The window between two messages (none without a pace)."""
        self._next_at = 0.0
        """Monotonic time before which paced events wait."""
        self._timer: asyncio.TimerHandle | None = None
        self._limit = max_tokens_per_message
        self._max_watches = max_watches
        self._subs: dict[int, _Sub] = {}
        self._dirty: dict[int, None] = {}
        self._control: list[Answer] = []
        self._wake = asyncio.Event()
        self._input_done = False
        self._aborted = False

    def __len__(self) -> int:
        return len(self._subs)

    async def watch(self, sub_id: int, job_id: str, after_seq: int, principal: Resolve) -> None:
        """Start following ``job_id`` after ``after_seq`` as the caller ``principal()`` resolves to.

        The answer (accepted or rejected) goes out before any event of the subscription.
        """
        if sub_id in self._subs:
            self._control.append(Rejected(sub_id, "ALREADY_EXISTS", f"sub_id {sub_id} is already watching"))
            self._wake.set()
            return
        if len(self._subs) >= self._max_watches:
            self._control.append(
                Rejected(
                    sub_id, "RESOURCE_EXHAUSTED", f"this stream already follows {self._max_watches} jobs"
                )
            )
            self._wake.set()
            return
        try:
            log, state = await self._open_log(job_id, await principal())
        except Exception as exc:  # a store failure too: the watch is refused, the stream lives on
            err: AshaoError = as_domain_error(exc)
            self._control.append(Rejected(sub_id, err.code.name, err.message))
            self._wake.set()
            return
        cursor = Cursor(log, after_seq)

        def listener() -> None:
            self._dirty[sub_id] = None
            if self._wake.is_set() or (self._timer is not None and not sub.fresh):
                return  # the writer is due anyway
            if sub.fresh or time.monotonic() >= self._next_at:
                self._wake.set()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(
                    self._next_at - time.monotonic(), self._due
                )

        sub = _Sub(cursor, listener)
        self._subs[sub_id] = sub
        log.listen(listener)
        self._control.append(Accepted(sub_id, state, len(log.tokens), log.answer))

        listener()  # send the backlog, if any

    def unwatch(self, sub_id: int) -> None:
        """Stop following; safe to call twice."""
        sub = self._subs.pop(sub_id, None)
        self._dirty.pop(sub_id, None)
        if sub is not None:
            sub.cursor.log.unlisten(sub.listener)

    def _due(self) -> None:
        self._timer = None
        if self._dirty:
            self._wake.set()

    async def next_message(
        self, answer: Callable[[Answer], None], emit: Callable[[int, Events], None]
    ) -> bool:
        """Wait for something to send, then hand over everything there is (bounded per subscription):
        every watch answer to ``answer``, then each subscription's new events to ``emit`` as they are
        taken (so a message can be built as it goes, with nothing kept per subscription meanwhile).
        False, with nothing handed over, once the stream is over."""
        while True:
            await self._wake.wait()
            if self._aborted:
                return False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            control = self._control
            self._control = []
            for item in control:
                answer(item)
            handed = len(control)
            dirty = self._dirty
            self._dirty = {}
            subs = self._subs
            limit = self._limit
            tokens = 0
            for sub_id in dirty:
                sub = subs.get(sub_id)
                if sub is None:
                    continue
                cursor = sub.cursor
                events = cursor.take(limit)
                if events is None:
                    continue
                sub.fresh = False
                tokens += len(events.tokens)
                handed += 1
                emit(sub_id, events)
                if cursor.done:
                    self.unwatch(sub_id)
                elif cursor.seq < len(cursor.log.tokens) or cursor.log.terminal is not None:
                    self._dirty[sub_id] = None  # more than one message's worth: continue next time
            over = self._input_done and not self._subs
            if not self._dirty and not self._control and not over:
                self._wake.clear()
            if handed:
                now = time.monotonic()
                pace = self.pace
                pace.count(tokens, now)
                self._next_at = now + pace.window_s
                return True
            if over:
                return False

    def end_input(self) -> None:
        """The client sends no more watches: the stream may end once every watched job has."""
        self._input_done = True
        self._wake.set()

    def abort(self) -> None:
        """End the stream now: ``next_message`` returns False at once."""
        self._aborted = True
        self._wake.set()

    def close(self) -> None:
        """Release every subscription."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for sub_id in list(self._subs):
            self.unwatch(sub_id)


class Follower:
    """One job's events for a per-job stream (StreamJob)."""

    def __init__(self, log: JobLog, after_seq: int, *, max_tokens_per_message: int) -> None:
        self._cursor = Cursor(log, after_seq)
        self._limit = max_tokens_per_message
        self._wake = asyncio.Event()
        self._wake.set()
        log.listen(self._wake.set)

    async def next(self) -> Events | None:
        """The next events, or None when the job has ended and everything was taken."""
        while not self._cursor.done:
            await self._wake.wait()
            self._wake.clear()
            events = self._cursor.take(self._limit)
            if events is not None:
                if not self._cursor.done and self._cursor.seq < len(self._cursor.log.tokens):
                    self._wake.set()
                return events
        return None

    def close(self) -> None:
        """Stop listening."""
        self._cursor.log.unlisten(self._wake.set)
