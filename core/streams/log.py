"""One append-only event log per job, read by any number of cursors.

A job's tokens are appended once; every subscriber holds only a cursor into the shared log, so a
slow subscriber costs no memory and never slows the worker or the others: when it catches up it
takes everything new in one go (that is the coalescing). Listeners are plain callbacks that mark a
subscriber dirty; the writer that serves it decides when to send.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Terminal:
    """How a job's log ended."""

    kind: str
    """"done" or "error"."""
    tokens: int = 0
    message: str = ""
    reason: str = ""


class JobLog:
    """The events of one job: tokens (seq 1..n), then at most one terminal event (seq n+1)."""

    __slots__ = ("_listeners", "answer", "job_id", "owner", "state", "terminal", "tokens")

    def __init__(
        self, job_id: str, tokens: list[str] | None = None, terminal: Terminal | None = None, answer: int = 0
    ) -> None:
        self.job_id = job_id
        self.tokens: list[str] = tokens if tokens is not None else []
        self.terminal = terminal
        self.answer = answer
        """The attempt whose answer these tokens are (0 before the first): readers resuming with tokens
        of another attempt were following an answer that was lost, and must not be given this one."""
        self.owner = ""
        """Whose job it was, and ``state`` how it ended, once that end is durable ('' until then, and for
        a log mirrored from another core): a reader of the finished log is then answered from here,
        without a read of the store."""
        self.state = ""
        self._listeners: list[Listener] = []

    @property
    def text(self) -> str:
        """Everything produced so far."""
        return "".join(self.tokens)

    def append(self, tokens: list[str]) -> None:
        """Add tokens and wake every listener."""
        if self.terminal is not None or not tokens:
            return
        self.tokens.extend(tokens)
        self.notify()

    def notify(self) -> None:
        """Wake every listener: tokens were added to ``tokens`` directly (a batch of them, once)."""
        listeners = self._listeners
        if len(listeners) == 1:  # (most logs have one reader: no copy)
            listeners[0]()
            return
        for listener in tuple(listeners):
            listener()

    def finish(self, terminal: Terminal) -> None:
        """End the log (first call wins) and wake every listener."""
        if self.terminal is not None:
            return
        self.terminal = terminal
        self.notify()

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` on every change."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            pass

    @property
    def listeners(self) -> int:
        """How many listeners are attached."""
        return len(self._listeners)


@dataclass(slots=True)
class Events:
    """What a cursor has not yet seen: a run of tokens and/or the terminal event."""

    first_seq: int
    tokens: list[str]
    terminal: Terminal | None
    terminal_seq: int
    answer: int = 0
    """The attempt whose answer the tokens are."""


class Cursor:
    """A reader's position in a JobLog: the seq of the last event it has taken."""

    __slots__ = ("done", "log", "seq")

    def __init__(self, log: JobLog, after_seq: int) -> None:
        self.log = log
        self.seq = after_seq
        self.done = False

    def take(self, limit: int) -> Events | None:
        """Everything new since the last take (at most ``limit`` tokens), or None."""
        if self.done:
            return None
        log = self.log
        n = len(log.tokens)
        start = self.seq  # index of the next token
        tokens: list[str] = []
        if start < n:
            end = min(n, start + limit)
            tokens = log.tokens[start:end]
            self.seq = end
        terminal = None
        terminal_seq = 0
        if log.terminal is not None and self.seq >= n:
            terminal = log.terminal
            terminal_seq = n + 1
            self.seq = n + 1
            self.done = True
        if not tokens and terminal is None:
            return None
        return Events(start + 1, tokens, terminal, terminal_seq, log.answer)


class FinishedLogs:
    """Finished logs kept for late subscribers, bounded by their total tokens (older ones: the store)."""

    def __init__(self, max_tokens: int) -> None:
        self._max_tokens = max_tokens
        self._tokens = 0
        self._logs: OrderedDict[str, JobLog] = OrderedDict()

    def put(self, log: JobLog) -> None:
        """Keep ``log``, evicting the oldest past the bound."""
        old = self._logs.pop(log.job_id, None)
        if old is not None:
            self._tokens -= len(old.tokens)
        self._logs[log.job_id] = log
        self._tokens += len(log.tokens)
        while self._tokens > self._max_tokens and len(self._logs) > 1:
            _, evicted = self._logs.popitem(last=False)
            self._tokens -= len(evicted.tokens)

    def get(self, job_id: str) -> JobLog | None:
        """The cached log of ``job_id``, if any."""
        return self._logs.get(job_id)
