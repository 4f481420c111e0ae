"""Jobs, conversations and ids as the core holds them in memory."""

from __future__ import annotations

import asyncio
import enum
import re
import secrets
from dataclasses import dataclass, field

from core.streams import JobLog

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_BODY = 22  # 62**22 > 2**128
ID_PATTERN = re.compile(r"^(job|conv|wrk|img|usr)_[0-9A-Za-z]{8,64}$")


class _Entropy:
    """Random bytes from the OS, fetched 4 KiB at a time: one system call per 256 ids, not per id."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take16(self) -> bytes:
        if self._pos + 16 > len(self._buf):
            self._buf, self._pos = secrets.token_bytes(4096), 0
        chunk = self._buf[self._pos : self._pos + 16]
        self._pos += 16
        return chunk


_entropy = _Entropy()


def new_id(prefix: str) -> str:
    """An opaque id such as ``job_4fQ…``: 128 random bits in base 62 (22 characters)."""
    n = int.from_bytes(_entropy.take16())
    body = []
    for _ in range(_ID_BODY):
        n, r = divmod(n, 62)
        body.append(_ALPHABET[r])
    return f"{prefix}_" + "".join(body)


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` is shaped like an id with ``prefix``."""
    return value.startswith(prefix + "_") and ID_PATTERN.match(value) is not None


class JobState(enum.StrEnum):
    """Lifecycle of a job; the string is what the store holds."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """Whether nothing more happens to the job."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


@dataclass(frozen=True, slots=True)
class ImageParams:
    """What an image job asks for."""

    prompt: str
    style: str
    aspect: str
    width: int
    height: int
    nsfw: bool


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A stored image's description."""

    id: str
    prompt: str
    style: str
    aspect: str
    sha256: str
    mime_type: str

    @property
    def url(self) -> str:
        """Where the HTTP facade serves it."""
        return f"/api/images/{self.id}"


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """How an image job ended for its caller."""

    image: StoredImage | None = None
    error: str = ""


@dataclass(slots=True)
class Job:
    """A live (not yet finished) job."""

    id: str
    tier: str
    model: str
    conversation_id: str
    owner: str
    max_tokens: int
    messages: list[tuple[str, str]]
    created_at_ms: int
    cost: int = 0
    """Credits held in escrow for this job."""
    payer: str = ""
    """The user who pays (empty for free tiers)."""
    state: JobState = JobState.QUEUED
    attempts: int = 0
    worker_id: str = ""
    log: JobLog = field(init=False)
    attempt_base: int = 0
    """Tokens in the log before the current attempt began (a resumed job continues after them)."""
    lease_expires: float = 0.0
    """Monotonic deadline of a pull worker's lease; 0 for stream workers."""
    queued_at: float = 0.0
    avoid: str = ""
    """The worker its last attempt failed, stalled or was lost on; the next goes elsewhere if it can."""
    last_progress: float = 0.0
    """Monotonic time of its assignment or its latest token (a stalled stream job is taken back)."""
    error: str = ""
    image: ImageParams | None = None
    """For an image job: what to draw."""
    result: asyncio.Future[ImageOutcome] | None = None
    """For an image job: what its caller awaits."""

    def __post_init__(self) -> None:
        self.log = JobLog(self.id)

    @property
    def attempt_tokens(self) -> int:
        """Tokens produced by the current attempt."""
        return len(self.log.tokens) - self.attempt_base
