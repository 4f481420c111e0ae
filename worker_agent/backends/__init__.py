"""What the agent asks of a chat backend: stream the tokens of one answer, then say why it stopped.

Each backend is one module: ``openai`` (any OpenAI-compatible model server) and ``synthetic``
(development and load tests). Image backends live in ``images``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from worker_agent import AgentError

Emit = Callable[[Sequence[str]], None]
"""Hands tokens of the running job to the agent, in order. Cheap and synchronous: it only queues."""


class BackendError(AgentError):
    """A backend could not produce (the rest of) an answer."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        """Whether another worker may try the job again."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the conversation."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat job as a backend sees it."""

    job_id: str
    messages: tuple[ChatMessage, ...]
    """The conversation so far, ending with the user's message."""
    max_tokens: int
    """Most tokens this attempt may produce."""
    prefix: str = ""
    """Text a previous attempt already delivered; the answer continues right after it."""
    trace_headers: tuple[tuple[str, str], ...] = ()
    """Trace context of the upstream call (``traceparent``…), to send along with it; empty unless the
    agent traces."""
    temperature: float | None = None
    """The caller's sampling temperature (None: the backend's default)."""
    stop: tuple[str, ...] = ()
    """Sequences that end the answer where they would appear; they are not part of it."""


class ChatBackend(Protocol):
    """Runs chat jobs. One instance serves every slot, so it must allow concurrent ``generate`` calls."""

    continues_prefix: bool
    """Whether an answer asked to continue after ``prefix`` joins it seamlessly. The core gives a job
    another worker left mid-answer only to such a backend (else the caller would see the answer start
    over, spliced onto the first part)."""

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        """Stream the answer through ``emit``; return the finish reason ("stop", "length").

        Raises BackendError when the answer cannot be finished; a partial answer is never a result.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and tasks."""
        ...
