"""How a job's events are written to one client: each surface has a ``Framer``.

The multiplexed subscription (``facade.mux``) hands every event of a job to its client's framer once,
and buffers the bytes it returns; nothing per token is built twice or parsed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import orjson

TOKEN_FRAME = b'id: %d\ndata: {"type":"token","value":%b}\n\n'
DONE_FRAME = b'id: %d\ndata: {"type":"done","tokens":%d}\n\n'
ERROR_FRAME = b'id: %d\ndata: {"type":"error","message":%b}\n\n'
ANSWER_LOST = "ANSWER_LOST"
"""The reason of the error ending a stream whose answer was lost with a restarted core."""


class Framer(Protocol):
    """Turns a job's events into the bytes one client is sent (each surface has its own shape). A framer
    may keep what it is given instead (an answer collected whole): then it returns ``b""`` and counts
    what it holds in ``held``, which the buffer bound applies to as to frames not yet written."""

    held: int

    def tokens(self, seq: int, tokens: Sequence[str]) -> bytes:
        """Tokens ``seq``, ``seq + 1``, …"""
        ...

    def done(self, seq: int, tokens: int) -> bytes:
        """The job finished with ``tokens`` tokens; its last event."""
        ...

    def error(self, seq: int, message: str, reason: str = "") -> bytes:
        """The job failed (or the stream was cut); its last event."""
        ...


class NetworkFramer:
    """The network API's events: ``{"type":"token","value"}`` per token, then done or error, each with
    its ``id`` (so an EventSource resumes with Last-Event-ID)."""

    held = 0

    def tokens(self, seq: int, tokens: Sequence[str]) -> bytes:
        """One token event per token."""
        dumps = orjson.dumps
        if len(tokens) == 1:  # (the common case at a trickle: no list, no join)
            return TOKEN_FRAME % (seq, dumps(tokens[0]))
        return b"".join([TOKEN_FRAME % (seq + i, dumps(t)) for i, t in enumerate(tokens)])

    def done(self, seq: int, tokens: int) -> bytes:
        """The done event."""
        return DONE_FRAME % (seq, tokens)

    def error(self, seq: int, message: str, reason: str = "") -> bytes:
        """The error event."""
        return ERROR_FRAME % (seq, orjson.dumps(message))


NETWORK = NetworkFramer()
