"""Jobs as the core holds them in memory, and their wire forms."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field

import orjson

from ashao.v1 import common_pb2, image_pb2, worker_pb2
from core.jobs.trace import JobTrace
from core.streams.log import JobLog


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

    @property
    def running(self) -> bool:
        """Whether a worker holds the job."""
        return self in (JobState.ASSIGNED, JobState.STREAMING)

    def to_proto(self) -> common_pb2.JobState.ValueType:
        """The wire enum."""
        return _TO_PROTO[self]


_TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})
_TO_PROTO = {
    JobState.QUEUED: common_pb2.JOB_STATE_QUEUED,
    JobState.ASSIGNED: common_pb2.JOB_STATE_ASSIGNED,
    JobState.STREAMING: common_pb2.JOB_STATE_STREAMING,
    JobState.DONE: common_pb2.JOB_STATE_DONE,
    JobState.FAILED: common_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: common_pb2.JOB_STATE_CANCELLED,
    JobState.EXPIRED: common_pb2.JOB_STATE_EXPIRED,
}


@dataclass(frozen=True, slots=True)
class ImageParams:
    """What an image job asks for."""

    prompt: str
    style: str
    aspect: str
    width: int
    height: int
    nsfw: bool

    def to_proto(self) -> worker_pb2.ImageParams:
        """The wire form."""
        return worker_pb2.ImageParams(
            prompt=self.prompt,
            style=self.style,
            aspect=self.aspect,
            width=self.width,
            height=self.height,
            nsfw=self.nsfw,
        )


@dataclass(frozen=True, slots=True)
class Sampling:
    """How a chat job's answer is sampled, as its caller asked (checked at admission)."""

    temperature: float | None = None
    """None: the model server's default."""
    stop: tuple[str, ...] = ()
    """Sequences that end the answer where they would appear."""

    def to_json(self) -> str:
        """How the store keeps it (with the job, so a job taken back after a restart runs the same)."""
        return orjson.dumps({"temperature": self.temperature, "stop": self.stop}).decode()

    @classmethod
    def from_json(cls, text: str) -> Sampling:
        """The inverse of ``to_json``."""
        data = orjson.loads(text)
        return cls(data.get("temperature"), tuple(data.get("stop") or ()))


NO_SAMPLING = Sampling()


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

    def to_proto(self) -> image_pb2.Image:
        """The wire form."""
        return image_pb2.Image(
            id=self.id,
            url=self.url,
            prompt=self.prompt,
            style=self.style,
            aspect=self.aspect,
            sha256=self.sha256,
            mime_type=self.mime_type,
        )


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A job's state as reported to callers."""

    id: str
    tier: str
    model: str
    conversation_id: str
    state: JobState
    attempts: int
    worker_id: str
    tokens: int
    created_at_ms: int
    error: str

    def to_proto(self) -> common_pb2.Job:
        """The wire form."""
        return common_pb2.Job(
            id=self.id,
            tier=self.tier,
            model=self.model,
            conversation_id=self.conversation_id,
            state=self.state.to_proto(),
            attempts=self.attempts,
            worker_id=self.worker_id,
            tokens=self.tokens,
            created_at_ms=self.created_at_ms,
            error=self.error,
        )


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
    continuing: bool = False
    """Callers already have part of its answer: only a worker that continues a partial answer
    seamlessly may take it (else it would start over, and the answer would be spliced)."""
    last_progress: float = 0.0
    """Monotonic time of its assignment or its latest token (a stalled stream job is taken back)."""
    assigned_at: float = 0.0
    """Monotonic time its current attempt was assigned (the worker's pace is measured from it)."""
    error: str = ""
    image: ImageParams | None = None
    """For an image job: what to draw."""
    admitted_at: float = 0.0
    """Monotonic time it first joined the queue (time to first token is counted from it)."""
    trace: JobTrace | None = None
    """Its spans, while tracing is on (None otherwise)."""
    sampling: Sampling = NO_SAMPLING
    """For a chat job: the caller's sampling options."""
    durable: asyncio.Future[None] | None = None
    """While the unit that admits it is being committed (it was handed out meanwhile): resolves once
    it is durable. Its end is not written before then (core/jobs/settle.py)."""

    def __post_init__(self) -> None:
        self.log = JobLog(self.id)

    @property
    def attempt_tokens(self) -> int:
        """Tokens produced by the current attempt."""
        return len(self.log.tokens) - self.attempt_base

    @property
    def remaining_tokens(self) -> int:
        """Tokens the job may still produce (its tier's budget less what earlier attempts delivered)."""
        return max(0, self.max_tokens - len(self.log.tokens))

    @property
    def prefix(self) -> str:
        """Text earlier attempts already delivered: a new attempt continues right after it."""
        return self.log.text if self.attempt_base else ""

    def snapshot(self) -> JobSnapshot:
        """Its state as reported to callers."""
        return JobSnapshot(
            self.id,
            self.tier,
            self.model,
            self.conversation_id,
            self.state,
            self.attempts,
            self.worker_id,
            len(self.log.tokens),
            self.created_at_ms,
            self.error,
        )

    def messages_to_proto(self) -> list[common_pb2.ChatMessage]:
        """The conversation the job carries to its worker."""
        return [common_pb2.ChatMessage(role=r, content=c) for r, c in self.messages]

    def to_assignment(self) -> worker_pb2.Assignment:
        """The Assignment pushed to the worker that runs this attempt."""
        a = worker_pb2.Assignment(
            image=self.image.to_proto() if self.image is not None else None,
            job_id=self.id,
            tier=self.tier,
            model=self.model,
            messages=self.messages_to_proto(),
            max_tokens=self.remaining_tokens,
            prefix=self.prefix,
            attempt=self.attempts,
            temperature=self.sampling.temperature,
            stop=self.sampling.stop,
        )
        if self.trace is not None:
            a.trace_context.update(self.trace.carrier())
        return a
