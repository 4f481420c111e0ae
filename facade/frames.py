"""Per-client buffers of ready SSE frames, and the clock that decides when their writers wake.

A reader (the multiplexed subscription stream, or a relay stream) turns the core's messages into SSE
frames once (bytes) and appends them to a client's ``FrameBuffer``; that client's response takes
everything buffered in one write when it wakes. A buffer may also be given a ``DirectSink`` (the
client's socket, beneath the ASGI layers): then a wake-up writes everything buffered to the socket
there and then, in one call, without a pass through the client's task at all (that pass costs more
than the write), as long as the socket takes writes and the task is not itself mid-write; otherwise
the task is woken as before, and writes (and waits for the socket) itself. ``Coalescer`` paces the
wake-ups: the first event after a quiet spell goes at once, later ones at most about once per
window, a terminal one at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class DirectSink(Protocol):
    """Where a buffer's bytes can be written without awaiting (a client's socket)."""

    def writable(self) -> bool:
        """Whether a write now would be taken at once (the client reads; it has not gone)."""
        ...

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole SSE frames)."""
        ...


class Coalescer:
    """Decides when a buffer's writer wakes: at once if it has not written for ``window_s``, else at
    the end of the window, so under load each client gets at most about one write per window (each
    write is a syscall and a pass through the ASGI stack) while an idle stream's first event, and
    every terminal event, still goes out at once. One timer serves every buffer."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._dirty: dict[FrameBuffer, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, buf: FrameBuffer) -> None:
        """``buf`` has new frames."""
        if buf.waiter is None:
            return  # its writer is busy writing; it takes the new frames when it comes back
        now = time.monotonic()
        due = buf.last_wake + self.window_s
        if now >= due:
            buf.wake(now)
            return
        self._dirty[buf] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(due, self._flush)

    def _flush(self) -> None:
        self._timer = None
        dirty, self._dirty = self._dirty, {}
        now = time.monotonic()
        for buf in dirty:
            buf.wake(now)

    def close(self) -> None:
        """Stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._dirty.clear()


class FrameBuffer:
    """SSE frames not yet written to one client; ``next()`` hands them over, all in one piece."""

    __slots__ = ("_coalescer", "direct", "ended", "frames", "last_push", "last_wake", "size", "waiter")

    def __init__(self, coalescer: Coalescer) -> None:
        self._coalescer = coalescer
        self.frames: list[bytes] = []
        self.size = 0
        """Bytes buffered."""
        self.ended = False
        """No frame will be added any more."""
        self.last_push = time.monotonic()
        self.last_wake = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.direct: DirectSink | None = None
        """The client's socket, while its response lets wake-ups write to it directly."""

    def add(self, frame: bytes) -> None:
        """Buffer ``frame`` without waking anyone: the caller wakes the writer when it is done adding."""
        self.frames.append(frame)
        self.size += len(frame)

    def push(self, frame: bytes, *, now: bool = False) -> None:
        """Buffer ``frame``; its writer wakes within the coalescing window (``now``: at once)."""
        self.frames.append(frame)
        self.size += len(frame)
        self.last_push = time.monotonic()
        if now:
            self.wake(self.last_push)
        else:
            self._coalescer.mark(self)

    def end(self, frame: bytes = b"") -> None:
        """Buffer a last frame (if any); the stream ends once it is written. Wakes the writer at once."""
        if self.ended:
            return
        if frame:
            self.frames.append(frame)
            self.size += len(frame)
        self.ended = True
        self.wake(time.monotonic())

    def wake(self, now: float) -> None:
        """Let the writer take what is buffered: written here and now to the direct sink, if there is
        one that takes writes, else by the writer's task. Nothing happens while the task is writing
        (it takes what is new when it comes back), so bytes never overtake each other."""
        w = self.waiter
        if w is not None and not w.done():
            self.last_wake = now
            frames = self.frames
            d = self.direct
            if d is not None and frames and not self.ended and d.writable():
                d.write(frames[0] if len(frames) == 1 else b"".join(frames))
                self.frames = []
                self.size = 0
                return
            w.set_result(None)

    async def next(self) -> bytes | None:
        """Everything buffered, in one piece, waiting for some if there is none; None once ended."""
        while not self.frames:
            if self.ended:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        self.size = 0
        return data
