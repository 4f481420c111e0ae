"""Every SQL statement about jobs, messages and conversations (writes returned as statements, so the
callers can put them in one unit with the money they move)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from core.economics import CHAT_TIERS
from core.jobs.model import NO_SAMPLING, ImageParams, Job, JobSnapshot, JobState, Sampling, StoredImage
from core.store import Statement, Store, now_ms

_UNFINISHED = ("queued", "assigned", "streaming")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A stored job as a reader sees it."""

    owner: str
    state: JobState
    tokens: list[str]
    error: str
    core_id: str
    answer: int


LIVE = "state NOT IN ('done', 'failed', 'cancelled', 'expired')"
"""Every change of a job's row applies only while it has not ended: an end is written once (several
cores may act on one job at once, e.g. a cancellation on one and its assignment on another; the first
end that commits stands, and its settlement's key refuses the money of any other)."""


class JobRepository:
    """Reads and the statements of writes."""

    def __init__(self, store: Store) -> None:
        self._store = store

    # -- writes (statements for the caller's unit) --------------------------------------------

    @staticmethod
    def new_conversation(conversation_id: str, owner: str, now: int) -> Statement:
        """Create a conversation."""
        return (
            "INSERT INTO conversations (id, owner, created_at) VALUES (?, ?, ?)",
            (conversation_id, owner, now),
        )

    @staticmethod
    def new_message(conversation_id: str, role: str, content: str, job_id: str, now: int) -> Statement:
        """Append a message to a conversation."""
        return (
            "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?,?,?,?,?)",
            (conversation_id, role, content, job_id, now),
        )

    @staticmethod
    def new_job(job: Job, now: int) -> Statement:
        """Insert a queued job."""
        if job.image is not None:
            params = orjson.dumps(dataclasses.asdict(job.image)).decode()
        else:
            params = job.sampling.to_json() if job.sampling != NO_SAMPLING else ""
        return (
            "INSERT INTO jobs (id, tier, model, conversation_id, owner, state, max_tokens, cost, payer,"
            " created_at, updated_at, params) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                job.id,
                job.tier,
                job.model,
                job.conversation_id,
                job.owner,
                JobState.QUEUED.value,
                job.max_tokens,
                job.cost,
                job.payer,
                now,
                now,
                params,
            ),
        )

    @staticmethod
    def requeued(job_id: str) -> Statement:
        """The job waits in its queue again."""
        return (
            "UPDATE jobs SET state='queued', worker_id='', updated_at=? WHERE id=? AND " + LIVE,
            (now_ms(), job_id),
        )

    @staticmethod
    def assigned(job: Job, core_id: str) -> Statement:
        """The job went to a worker (held by core ``core_id``)."""
        return (
            "UPDATE jobs SET state='assigned', worker_id=?, attempts=?, core_id=?, updated_at=? WHERE id=? AND "
            + LIVE,
            (job.worker_id, job.attempts, core_id, now_ms(), job.id),
        )

    @staticmethod
    def held(job_id: str, core_id: str) -> Statement:
        """Core ``core_id`` took the job from the shared queue: it is where the job is followed."""
        return ("UPDATE jobs SET core_id=?, updated_at=? WHERE id=? AND " + LIVE, (core_id, now_ms(), job_id))

    @staticmethod
    def touched(job_id: str, now: int) -> Statement:
        """The job was published again (stranded jobs are not published again at once)."""
        return ("UPDATE jobs SET updated_at=? WHERE id=? AND " + LIVE, (now, job_id))

    @staticmethod
    def streaming(job_id: str, attempt: int) -> Statement:
        """The job's first token (of attempt ``attempt``) reached its callers: from now on a lost answer
        cannot start over."""
        return (
            "UPDATE jobs SET state='streaming', answer_attempt=?, updated_at=? WHERE id=? AND " + LIVE,
            (attempt, now_ms(), job_id),
        )

    @staticmethod
    def completed(job: Job, worker_id: str, now: int) -> list[Statement]:
        """A chat job is done: its output, the reply message, the worker's stats."""
        n = len(job.log.tokens)
        return [
            (
                "UPDATE jobs SET state='done', tokens=?, output=?, updated_at=? WHERE id=? AND " + LIVE,
                (n, orjson.dumps(job.log.tokens).decode(), now, job.id),
            ),
            JobRepository.new_message(job.conversation_id, "assistant", job.log.text, job.id, now),
            (
                "UPDATE workers SET jobs_completed = jobs_completed + 1, tokens_generated = tokens_generated + ?,"
                " last_seen = ? WHERE id = ?",
                (n, now, worker_id),
            ),
        ]

    @staticmethod
    def image_completed(job: Job, image: StoredImage, worker_id: str, now: int) -> list[Statement]:
        """An image job is done: the image row, the worker's stats."""
        return [
            ("UPDATE jobs SET state='done', updated_at=? WHERE id=? AND " + LIVE, (now, job.id)),
            (
                "INSERT INTO images (id, job_id, owner, prompt, style, aspect, sha256, mime_type, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    image.id,
                    job.id,
                    job.owner,
                    image.prompt,
                    image.style,
                    image.aspect,
                    image.sha256,
                    image.mime_type,
                    now,
                ),
            ),
            (
                "UPDATE workers SET jobs_completed = jobs_completed + 1, last_seen = ? WHERE id = ?",
                (now, worker_id),
            ),
        ]

    @staticmethod
    def ended(job: Job, state: JobState, message: str) -> Statement:
        """A job failed, expired or was cancelled (what it produced is kept)."""
        return (
            "UPDATE jobs SET state=?, error=?, tokens=?, output=?, updated_at=? WHERE id=? AND " + LIVE,
            (
                state.value,
                message,
                len(job.log.tokens),
                orjson.dumps(job.log.tokens).decode(),
                now_ms(),
                job.id,
            ),
        )

    @staticmethod
    def idempotency(
        owner: str, key: str, request_sha256: str, job_id: str, conversation_id: str, now: int
    ) -> Statement:
        """Remember which job a send with an idempotency key created (its primary key refuses a second)."""
        return (
            "INSERT INTO idempotency_keys (owner, key, request_sha256, job_id, conversation_id, created_at)"
            " VALUES (?,?,?,?,?,?)",
            (owner, key, request_sha256, job_id, conversation_id, now),
        )

    async def prune_idempotency(self, before_ms: int) -> None:
        """Forget idempotency keys older than ``before_ms``."""
        await self._store.write([("DELETE FROM idempotency_keys WHERE created_at < ?", (before_ms,))])

    # -- reads --------------------------------------------------------------------------------

    async def idempotent(self, owner: str, key: str, since_ms: int) -> tuple[str, str, str] | None:
        """(request sha256, job id, conversation id) of an earlier send with this key, if recent."""
        row = await self._store.fetchone(
            "SELECT request_sha256, job_id, conversation_id FROM idempotency_keys"
            " WHERE owner = ? AND key = ? AND created_at >= ?",
            (owner, key, since_ms),
        )
        return (str(row[0]), str(row[1]), str(row[2])) if row else None

    async def conversation_owner(self, conversation_id: str) -> str | None:
        """The owner of a conversation, or None."""
        row = await self._store.fetchone("SELECT owner FROM conversations WHERE id = ?", (conversation_id,))
        return None if row is None else str(row[0])

    async def latest_messages(self, conversation_id: str, limit: int) -> list[tuple[str, str]]:
        """The newest ``limit`` messages of a conversation, oldest first."""
        rows = await self._store.fetchall(
            "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
            (conversation_id, limit),
        )
        return [(r, c) for r, c in reversed(rows)]

    async def messages(self, conversation_id: str) -> list[tuple[str, str]]:
        """Every message of a conversation, oldest first."""
        rows = await self._store.fetchall(
            "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [(r, c) for r, c in rows]

    async def unfinished(self) -> list[str]:
        """Ids of every job not yet ended, oldest first."""
        rows = await self._store.fetchall(
            "SELECT id FROM jobs WHERE state IN (?,?,?) ORDER BY created_at", _UNFINISHED
        )
        return [str(r[0]) for r in rows]

    async def load(self, job_id: str, history_limit: int) -> tuple[Job, JobState] | None:
        """A stored job as it would run again (its conversation up to its own message, what an image job
        asks for), and the state the store holds for it; None if there is no such job. One read: the
        job's row beside each message of its history (a core loads every job it pulls from the shared
        queue so), the job's own message found among its conversation's (by the index on them)."""
        rows = await self._store.fetchall(
            "SELECT j.id, j.tier, j.model, j.conversation_id, j.owner, j.max_tokens, j.created_at, j.attempts,"
            " j.state, j.cost, j.payer, j.params, m.role, m.content FROM jobs j LEFT JOIN messages m"
            " ON m.conversation_id = j.conversation_id AND m.id <= ("
            " SELECT u.id FROM messages u WHERE u.conversation_id = j.conversation_id AND u.job_id = j.id"
            " AND u.role = 'user')"
            " WHERE j.id = ? ORDER BY m.id",
            (job_id,),
        )
        if not rows:
            return None
        jid, tier, model, conv, owner, max_tokens, created, attempts, state, cost, payer, params = rows[0][
            :12
        ]
        history = [(r[12], r[13]) for r in rows if r[12] is not None][-history_limit:] if conv else []
        job = Job(
            jid,
            tier,
            model,
            conv,
            owner,
            int(max_tokens),
            history,
            int(created),
            int(cost),
            payer,
            attempts=int(attempts),
        )
        if params and job.tier in CHAT_TIERS:
            job.sampling = Sampling.from_json(params)
        elif params:
            job.image = ImageParams(**orjson.loads(params))
        return job, JobState(state)

    async def completed_count(self) -> int:
        """Jobs done since the network began."""
        row = await self._store.fetchone("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
        return int(row[0]) if row else 0

    async def snapshot(self, job_id: str) -> tuple[str, JobSnapshot] | None:
        """(owner, snapshot) of a stored job."""
        row = await self._store.fetchone(
            "SELECT id, tier, model, conversation_id, state, attempts, worker_id, tokens, created_at, error,"
            " owner FROM jobs WHERE id = ?",
            (job_id,),
        )
        if row is None:
            return None
        snap = JobSnapshot(
            row[0],
            row[1],
            row[2],
            row[3],
            JobState(row[4]),
            int(row[5]),
            row[6],
            int(row[7]),
            int(row[8]),
            row[9],
        )
        return str(row[10]), snap

    async def outcome(self, job_id: str) -> Outcome | None:
        """A stored job: its owner, state, output, error, the core that holds it and the attempt whose
        answer its tokens are."""
        row = await self._store.fetchone(
            "SELECT state, output, error, owner, core_id, answer_attempt FROM jobs WHERE id = ?", (job_id,)
        )
        if row is None:
            return None
        tokens: list[str] = orjson.loads(row[1]) if row[1] else []
        return Outcome(str(row[3]), JobState(row[0]), tokens, str(row[2]), str(row[4]), int(row[5]))

    async def standing(self, job_id: str) -> tuple[str, JobState, str] | None:
        """A stored job's tier, state and the core that holds it ('' if none took it)."""
        row = await self._store.fetchone("SELECT tier, state, core_id FROM jobs WHERE id = ?", (job_id,))
        return (str(row[0]), JobState(row[1]), str(row[2])) if row is not None else None

    async def holder(self, job_id: str) -> str:
        """The core that holds a job ('' if none took it)."""
        row = await self._store.fetchone("SELECT core_id FROM jobs WHERE id = ?", (job_id,))
        return str(row[0]) if row else ""

    async def stranded(self, before_ms: int) -> list[tuple[str, str]]:
        """(id, tier) of queued jobs no core took, not published since ``before_ms``."""
        rows = await self._store.fetchall(
            "SELECT id, tier FROM jobs WHERE state = 'queued' AND core_id = '' AND updated_at < ? LIMIT 1000",
            (before_ms,),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def queued_before(self, before_ms: int) -> list[str]:
        """Ids of jobs queued since before ``before_ms``."""
        rows = await self._store.fetchall(
            "SELECT id FROM jobs WHERE state = 'queued' AND created_at < ? LIMIT 1000", (before_ms,)
        )
        return [str(r[0]) for r in rows]

    async def locations(self, job_ids: list[str]) -> list[tuple[str, str, JobState]]:
        """(job id, core id, state) of stored jobs."""
        if not job_ids:
            return []
        marks = ",".join("?" * len(job_ids))
        rows = await self._store.fetchall(
            f"SELECT id, core_id, state FROM jobs WHERE id IN ({marks})", job_ids
        )
        return [(str(r[0]), str(r[1]), JobState(r[2])) for r in rows]

    async def worker_stats(self, worker_id: str) -> tuple[int, int]:
        """(jobs completed, tokens generated) of a worker."""
        row = await self._store.fetchone(
            "SELECT jobs_completed, tokens_generated FROM workers WHERE id = ?", (worker_id,)
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def image_of_job(self, job_id: str) -> StoredImage | None:
        """The image an image job made, if it is done."""
        row = await self._store.fetchone(
            "SELECT id, prompt, style, aspect, sha256, mime_type FROM images WHERE job_id = ?", (job_id,)
        )
        return StoredImage(*row) if row else None

    async def image(self, image_id: str) -> StoredImage | None:
        """A stored image's description."""
        row = await self._store.fetchone(
            "SELECT id, prompt, style, aspect, sha256, mime_type FROM images WHERE id = ?", (image_id,)
        )
        return StoredImage(*row) if row else None


__all__ = ["JobRepository"]
