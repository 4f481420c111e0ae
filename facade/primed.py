"""Watches opened as a send is answered, for the stream its sender opens next.

A browser sends, and opens ``/api/chat/stream`` for the job the moment the answer names it. Opening
that watch only then costs a round trip to the core on the path to the first token, after the
send's own. So when a send is answered the facade starts following its job at once (``prime``);
when the stream request comes, from the same caller (credential and address) and from the start
(no ``Last-Event-ID``), it takes that watch over (``claim``): accepted already, often with the first
tokens buffered. The core authorized the watch for exactly the caller who claims it, so the answer
is the one a watch opened then would get.

Every bound is small: an unclaimed watch is released after ``hold_s``; at most ``max_primed`` are
held at once (past that, sends are answered without one); one buffers at most ``PRIMED_BUFFER_BYTES``
until claimed (past that it is dropped, and the stream watches afresh from the start); and a caller
whose last primed watch went unclaimed (it polls, or streams elsewhere) gets none until it opens a
stream here again, so a sender that never streams costs one watch, once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import NamedTuple

from facade.mux import Mux, Subscription, WatchRefused

MAX_PRIMED = 4096
"""Most primed watches held at once."""
PRIMED_BUFFER_BYTES = 64 * 1024
"""Most bytes of events a primed watch holds before its stream claims it."""
MAX_QUIET = 10_000
"""Most callers remembered as not streaming what they send."""


class _Primed(NamedTuple):
    sub: Subscription
    until: float
    credential: str
    client_ip: str


def _retrieve(f: asyncio.Future[None]) -> None:
    """An unclaimed watch's refusal has no one to raise to: mark it seen."""
    if not f.cancelled():
        f.exception()


class Primer:
    """The primed watches of one mux."""

    def __init__(self, mux: Mux, *, hold_s: float, max_primed: int = MAX_PRIMED) -> None:
        self._mux = mux
        self.hold_s = hold_s
        self._max = max_primed
        self._held: OrderedDict[str, _Primed] = OrderedDict()
        """By job id, oldest first (every one is held as long, so they expire in this order)."""
        self._timer: asyncio.TimerHandle | None = None
        self._quiet: OrderedDict[tuple[str, str], None] = OrderedDict()
        """Callers (credential, address) whose last primed watch went unclaimed, oldest first."""
        self.claimed = 0
        """Streams that started on a primed watch."""
        self.expired = 0
        """Primed watches released unclaimed."""

    def __len__(self) -> int:
        return len(self._held)

    def prime(self, job_id: str, *, credential: str, client_ip: str) -> None:
        """Follow ``job_id`` now, for its sender's stream (nothing if off, full, or the core is away)."""
        if self.hold_s <= 0 or not self._mux.connected or job_id in self._held:
            return
        if len(self._held) >= self._max or (credential, client_ip) in self._quiet:
            return
        try:
            sub = self._mux.open(job_id, 0, credential=credential, client_ip=client_ip)
        except (WatchRefused, ValueError):  # stopping, or a field that does not fit a watch
            return
        sub.max_bytes = PRIMED_BUFFER_BYTES
        sub.ready.add_done_callback(_retrieve)
        until = time.monotonic() + self.hold_s
        self._held[job_id] = _Primed(sub, until, credential, client_ip)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(self._at(until), self._expire)

    def claim(self, job_id: str, after_seq: int, *, credential: str, client_ip: str) -> Subscription | None:
        """The primed watch of ``job_id``, if this request may take it over (the same caller, from the
        start, and the watch still whole); else None (and a primed watch that cannot serve is released)."""
        self._quiet.pop((credential, client_ip), None)  # it streams: its next sends are primed again
        held = self._held.pop(job_id, None)
        if held is None:
            return None
        sub = held.sub
        refused = sub.ready.done() and (sub.ready.cancelled() or sub.ready.exception() is not None)
        if (
            not self._mux.connected  # (a stream opened now is told the core is away, not kept waiting)
            or after_seq != 0
            or credential != held.credential
            or client_ip != held.client_ip
            or sub.cut
            or refused
            or (sub.ended and not sub.frames)
        ):
            self._mux.release(sub)
            return None
        self.claimed += 1
        sub.max_bytes = 0
        return sub

    def close(self) -> None:
        """Release every primed watch and stop the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, OrderedDict()
        for p in held.values():
            self._mux.release(p.sub)

    def _at(self, until: float) -> float:
        """``until`` (time.monotonic) on the loop's clock."""
        return asyncio.get_running_loop().time() + max(0.0, until - time.monotonic())

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        held = self._held
        while held:
            job_id, p = next(iter(held.items()))
            if p.until > now:
                self._timer = asyncio.get_running_loop().call_at(self._at(p.until), self._expire)
                return
            del held[job_id]
            self.expired += 1
            self._mux.release(p.sub)
            quiet = self._quiet
            quiet[(p.credential, p.client_ip)] = None
            quiet.move_to_end((p.credential, p.client_ip))
            if len(quiet) > MAX_QUIET:
                quiet.popitem(last=False)
