"""The SSE clients of the hold benchmark: one ``asyncio.Protocol`` per stream, parsing what arrives
with one regex pass per read (a load generator on the same two cores as the system under test must
cost as little as possible per token), checking every token's order and timing it.

Tokens carry ``"<index>@<emit time ns>"`` (``bench.loadworker``); ``id`` must be ``index + 1``.
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array

TOKEN_RE = re.compile(rb'id: (\d+)\ndata: \{"type":"token","value":"(\d+)@(\d+)"\}')
END_RE = re.compile(rb'"type":"(done|error)"')


class Tally:
    """What the clients of one hold saw."""

    def __init__(self) -> None:
        self.received = 0
        self.out_of_order = 0
        self.complete = 0
        self.failed = 0
        self.first_failure = b""
        self.stamps = array("q")
        self.lags_us = array("q")


class Follower(asyncio.Protocol):
    """One SSE client: parses what arrives with one regex pass per read, checks order, times tokens."""

    def __init__(self, request: bytes, tally: Tally, expect: int) -> None:
        self._request = request
        self._expect = expect
        self._tally = tally
        self._buf = b""
        self._next = 0
        self._started = False
        self.transport: asyncio.WriteTransport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # (uvloop's is no asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self._buf + data if self._buf else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self._buf = buf
            if not self._started and b"\r\n\r\n" in buf:
                self._head(buf)
            return
        part, self._buf = buf[: cut + 2], buf[cut + 2 :]
        if not self._started and not self._head(part):
            return
        t = self._tally
        n = self._next
        stamps, lags = t.stamps, t.lags_us
        found = TOKEN_RE.findall(part)
        for sid, idx, stamp in found:
            i = int(idx)
            if i != n or int(sid) != i + 1:
                t.out_of_order += 1
            n = i + 1
            s = int(stamp)
            stamps.append(s)
            lags.append((now - s) // 1000)
        self._next = n
        t.received += len(found)
        m = END_RE.search(part)
        if m is not None:
            if m.group(1) == b"done" and n == self._expect:
                t.complete += 1
            else:
                t.failed += 1
                t.first_failure = t.first_failure or part[-300:]
            self._end()

    def _head(self, data: bytes) -> bool:
        self._started = True
        if not data.startswith(b"HTTP/1.1 200"):
            self._tally.failed += 1
            self._tally.first_failure = self._tally.first_failure or data[:300]
            self._end()
            return False
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    def _end(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)
        if not self.ended.done():
            self.ended.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self._tally.failed += 1
            self._end()
