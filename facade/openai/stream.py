"""A job's events in OpenAI's shapes: ``chat.completion.chunk`` Server-Sent Events, or the answer whole.

``ChunkFramer`` builds each chunk's bytes once from a template (the tokens of one event of the
multiplexed subscription become one chunk), ends a finished answer with its ``finish_reason``, the
usage chunk when asked, and ``data: [DONE]``; a failure after the stream began is an ``error`` event
(the SDKs raise it) and no ``[DONE]``, so a cut answer never looks complete. ``Collector`` keeps the
answer instead, for a request that wants it whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from facade.events import ANSWER_LOST

DONE = b"data: [DONE]\n\n"
_MESSAGES = {
    ANSWER_LOST: "the coordinator restarted mid-answer and the answer was lost; send the request again",
    "SLOW_CONSUMER": "this client fell too far behind the stream; send the request again",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What every chunk of one answer (and the whole answer) says about it."""

    id: str
    created: int
    model: str
    budget: int
    """The answer's token budget: an answer that reached it was cut short ("length")."""
    prompt_tokens: int

    def finish_reason(self, tokens: int) -> str:
        """Why an answer of ``tokens`` tokens ended."""
        return "length" if self.budget and tokens >= self.budget else "stop"

    def usage(self, tokens: int) -> dict[str, int]:
        """The usage object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": self.prompt_tokens + tokens,
        }


def failure_message(message: str, reason: str) -> str:
    """What a client of this surface is told about a failed answer."""
    return _MESSAGES.get(reason, message)


def failure_code(reason: str) -> str:
    """The error ``code`` of a failed answer: the core's reason, as OpenAI spells codes."""
    return reason.lower() if reason else "job_failed"


class ChunkFramer:
    """The SSE events of one streamed answer."""

    held = 0

    def __init__(self, answer: Answer, *, include_usage: bool) -> None:
        self._answer = answer
        self._include_usage = include_usage
        head = orjson.dumps(
            {
                "id": answer.id,
                "object": "chat.completion.chunk",
                "created": answer.created,
                "model": answer.model,
            }
        )[:-1]
        self._head = b"data: " + head
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        # (a template for %: the head's own % signs are doubled)
        self._content = (
            self._head.replace(b"%", b"%%")
            + b',"choices":[{"index":0,"delta":{"content":%b},"finish_reason":null}]'
        ) + tail
        self._tail = tail

    def opening(self) -> bytes:
        """The first event: the role of the answer (as OpenAI sends it before any content)."""
        return (
            self._head
            + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
            + self._tail
        )

    def tokens(self, seq: int, tokens: Sequence[str]) -> bytes:
        """One chunk carrying the tokens of one event."""
        return self._content % orjson.dumps("".join(tokens))

    def done(self, seq: int, tokens: int) -> bytes:
        """The chunk with the finish reason, the usage chunk if asked for, then ``[DONE]``."""
        reason = self._answer.finish_reason(tokens).encode()
        out = [
            self._head + b',"choices":[{"index":0,"delta":{},"finish_reason":"' + reason + b'"}]' + self._tail
        ]
        if self._include_usage:
            out.append(
                self._head + b',"choices":[],"usage":' + orjson.dumps(self._answer.usage(tokens)) + b"}\n\n"
            )
        out.append(DONE)
        return b"".join(out)

    def error(self, seq: int, message: str, reason: str = "") -> bytes:
        """An ``error`` event (and no ``[DONE]``: the answer is not complete)."""
        body = {
            "error": {
                "message": failure_message(message, reason),
                "type": "server_error",
                "param": None,
                "code": failure_code(reason),
            }
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"


class Collector:
    """Keeps one answer whole; ``held`` counts its characters (bounded as a slow client's backlog)."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.held = 0
        self.tokens_total: int | None = None
        """Set when the answer finished."""
        self.failure: tuple[str, str] | None = None
        """(message, reason) when it failed."""

    def tokens(self, seq: int, tokens: Sequence[str]) -> bytes:
        """Keep them."""
        self.pieces.extend(tokens)
        self.held += sum(map(len, tokens))
        return b""

    def done(self, seq: int, tokens: int) -> bytes:
        """The answer is complete."""
        self.tokens_total = tokens
        return b""

    def error(self, seq: int, message: str, reason: str = "") -> bytes:
        """The answer failed."""
        if reason == "SLOW_CONSUMER":  # (what the buffer bound says of an answer kept whole)
            message = (
                "the answer is larger than the facade keeps for one request; ask for it with stream: true"
            )
        else:
            message = failure_message(message, reason)
        self.failure = (message, reason)
        return b""
