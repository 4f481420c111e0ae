"""The job lifecycle: send → queue → push to a worker → tokens → done | failed | expired.

All rules about jobs and workers live here; the gRPC servicers only translate. State changes
happen in memory first (so dispatch never waits for disk) and are written through the group-commit
store; a send is acknowledged only once its job is durable, and a job's ``done`` event is published
only once its reply is persisted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from core.auth import Principal
from core.billing import NOTHING, Billing, Booking
from core.config import CoreSettings
from core.dispatch import Scheduler, WorkerSlotView
from core.economics import CHAT_TIERS, TIERS
from core.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from core.imagestore import MAX_IMAGE_BYTES, ImageStore, sniff
from core.jobs import ImageOutcome, ImageParams, Job, JobState, StoredImage, is_id, new_id
from core.ledger import Ledger, worker_account
from core.stats import TokenMeter
from core.store import Statement, Store, StoreError, now_ms
from core.streams import FinishedLogs, JobLog, Terminal

log = logging.getLogger("ashao.core.coordinator")

LIVE = (JobState.QUEUED, JobState.ASSIGNED, JobState.STREAMING)
MAX_WORKER_NAME = 64
MAX_SLOTS = 1024


@dataclass(slots=True)
class WorkerInfo:
    """A registered worker."""

    id: str
    name: str
    tiers: frozenset[str]
    slots: int
    last_seen: float = 0.0
    """Monotonic time of its last message (stream) or call (pull path)."""
    tokens_per_sec: float = 0.0
    view: WorkerSlotView | None = None
    """Set while it holds a Connect stream."""
    pulled: set[str] = field(default_factory=set)
    """Jobs it took through the pull path."""


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


@dataclass(frozen=True, slots=True)
class WorkerAccount:
    """A worker's earnings and stats."""

    earnings: int
    jobs_completed: int
    tokens_generated: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Live network figures."""

    active_workers: int
    queue_depth: int
    jobs_completed: int
    tokens_per_sec: float


def hash_token(token: str) -> str:
    """How worker tokens are stored: never in clear."""
    return hashlib.sha256(token.encode()).hexdigest()


class Coordinator:
    """Owns every live job, the queues and the worker registry."""

    def __init__(self, *, settings: CoreSettings, store: Store, ledger: Ledger) -> None:
        self._settings = settings
        self._store = store
        self.ledger = ledger
        self._billing = Billing(ledger)
        self.jobs: dict[str, Job] = {}
        self.scheduler = Scheduler()
        self._finished = FinishedLogs(settings.finished_tokens_kept)
        self._workers: dict[str, WorkerInfo] = {}
        self._by_token: dict[str, str] = {}
        self.meter = TokenMeter()
        self.jobs_completed = 0
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False
        self._pending_writes: set[asyncio.Future[None]] = set()
        self.heartbeat_timeout_s = 3 * settings.heartbeat_interval_ms / 1000
        self.image_store = ImageStore(settings.data_dir / "images")
        self.outcomes: deque[JobState] = deque(maxlen=500)
        """How the most recent jobs ended (for vitals)."""
        self.last_send_at = 0.0
        self._closers: dict[int, Callable[[str], None]] = {}
        """How to close each attached stream (by view identity), for workers the core gives up on."""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load workers and unfinished jobs from the store, requeue them, start the reaper."""
        for wid, name, token_hash, tiers, slots in await self._store.fetchall(
            "SELECT id, name, token_hash, tiers, slots FROM workers"
        ):
            info = WorkerInfo(wid, name, frozenset(orjson.loads(tiers)), slots)
            self._workers[wid] = info
            self._by_token[token_hash] = wid
        row = await self._store.fetchone("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
        self.jobs_completed = int(row[0]) if row else 0
        await self._recover_jobs()
        self._reaper = asyncio.create_task(self._reap_forever(), name="ashao-reaper")

    async def _recover_jobs(self) -> None:
        rows = await self._store.fetchall(
            "SELECT id, tier, model, conversation_id, owner, max_tokens, created_at, attempts, state, cost, payer"
            " FROM jobs WHERE state IN ('queued','assigned','streaming') ORDER BY created_at"
        )
        requeued: list[Statement] = []
        for jid, tier, model, conv, owner, max_tokens, created, attempts, state, cost, payer in rows:
            history = await self._history_for(conv, jid)
            job = Job(
                jid, tier, model, conv, owner, max_tokens, history, created, cost, payer, attempts=attempts
            )
            job.queued_at = time.monotonic()
            self.jobs[jid] = job
            self.scheduler.enqueue(tier, owner, jid)
            if state != JobState.QUEUED:
                requeued.append(
                    ("UPDATE jobs SET state='queued', worker_id='', updated_at=? WHERE id=?", (now_ms(), jid))
                )
        if requeued:
            await self._store.write(requeued)
        if rows:
            log.info("recovered %d unfinished jobs from the store", len(rows))

    async def _history_for(self, conversation_id: str, job_id: str) -> list[tuple[str, str]]:
        rows = await self._store.fetchall(
            "SELECT role, content FROM messages WHERE conversation_id = ? AND id <= ("
            " SELECT id FROM messages WHERE job_id = ? AND role = 'user') ORDER BY id",
            (conversation_id, job_id),
        )
        return [(r, c) for r, c in rows][-self._settings.max_history_messages :]

    async def shutdown(self) -> None:
        """Stop the reaper and wait for pending writes. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self._pending_writes:
            await asyncio.wait(self._pending_writes, timeout=5)

    # -- chat -------------------------------------------------------------------------------

    async def send(
        self, *, tier: str, content: str, conversation_id: str, principal: Principal
    ) -> tuple[str, str]:
        """Validate, charge, persist the message (and conversation), queue the job.

        Returns (job id, conversation id) once all of it is durable in one unit.
        """
        if self._closing:
            raise UnavailableError("the core is shutting down")
        spec = TIERS.get(tier)
        if spec is None or not spec.chat:
            raise InvalidArgumentError(f"tier: must be one of {', '.join(CHAT_TIERS)}", field="tier")
        if not content.strip():
            raise InvalidArgumentError("content: must not be empty", field="content")
        if len(content) > self._settings.max_content_chars:
            raise InvalidArgumentError(
                f"content: longer than {self._settings.max_content_chars} characters", field="content"
            )
        if spec.credit_cost and principal.kind not in ("user", "service"):
            raise UnauthenticatedError(f"tier {tier} costs {spec.credit_cost} credits: sign in first")
        owner = principal.owner
        now = now_ms()
        statements: list[Statement] = []
        if conversation_id:
            if not is_id(conversation_id, "conv"):
                raise InvalidArgumentError("conversationId: malformed id", field="conversationId")
            row = await self._store.fetchone(
                "SELECT owner FROM conversations WHERE id = ?", (conversation_id,)
            )
            if row is None or not self._may_see(row[0], principal):
                raise InvalidArgumentError("conversationId: unknown conversation", field="conversationId")
            history = await self._store.fetchall(
                "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id DESC LIMIT ?",
                (conversation_id, self._settings.max_history_messages - 1),
            )
            messages = [(r, c) for r, c in reversed(history)]
        else:
            conversation_id = new_id("conv")
            statements.append(
                (
                    "INSERT INTO conversations (id, owner, created_at) VALUES (?, ?, ?)",
                    (conversation_id, owner, now),
                )
            )
            messages = []
        messages.append(("user", content))
        payer = principal.user_id if spec.credit_cost and principal.kind == "user" else ""
        job = Job(
            new_id("job"),
            tier,
            spec.model,
            conversation_id,
            owner,
            spec.max_tokens,
            messages,
            now,
            spec.credit_cost,
            payer,
        )
        statements += [
            (
                "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?,?,?,?,?)",
                (conversation_id, "user", content, job.id, now),
            ),
            (
                "INSERT INTO jobs (id, tier, model, conversation_id, owner, state, max_tokens, cost, payer,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    tier,
                    spec.model,
                    conversation_id,
                    owner,
                    JobState.QUEUED.value,
                    spec.max_tokens,
                    job.cost,
                    payer,
                    now,
                    now,
                ),
            ),
        ]
        # No await between the balance check and the submit: admission is atomic per payer.
        booking = self._billing.charge(job_id=job.id, tier=tier, payer=payer) if payer else NOTHING
        try:
            await self._store.write(statements + booking.statements)
        except StoreError as exc:
            self.ledger.revert(booking.moves)
            raise UnavailableError(f"could not persist the message: {exc}") from exc
        job.queued_at = self.last_send_at = time.monotonic()
        self.jobs[job.id] = job
        self.scheduler.enqueue(tier, owner, job.id)
        self._pump()
        return job.id, conversation_id

    @staticmethod
    def _may_see(owner: str, principal: Principal) -> bool:
        """A user's things are theirs alone; anonymous things are reachable by their unguessable id."""
        return not owner.startswith("usr_") or owner == principal.user_id

    async def open_log(self, job_id: str, principal: Principal) -> tuple[JobLog, JobState]:
        """The event log of a job, live or finished. NOT_FOUND for unknown ids and other users' jobs."""
        job = self.jobs.get(job_id)
        if job is not None and self._may_see(job.owner, principal):
            return job.log, job.state
        if job is None and is_id(job_id, "job"):
            row = await self._store.fetchone(
                "SELECT state, output, error, owner FROM jobs WHERE id = ?", (job_id,)
            )
            job = self.jobs.get(job_id)  # it may have gone live again while we read
            if job is not None and self._may_see(job.owner, principal):
                return job.log, job.state
            if job is None and row is not None and self._may_see(row[3], principal):
                state = JobState(row[0])
                if not state.terminal:
                    raise UnavailableError("job is being recovered; retry shortly")
                cached = self._finished.get(job_id)
                if cached is not None and cached.terminal is not None:
                    return cached, state
                tokens: list[str] = orjson.loads(row[1]) if row[1] else []
                if state == JobState.DONE:
                    terminal = Terminal("done", tokens=len(tokens))
                else:
                    terminal = Terminal(
                        "error", message=row[2] or f"job {state.value}", reason=state.value.upper()
                    )
                finished = JobLog(job_id, tokens, terminal)
                self._finished.put(finished)
                return finished, state
        raise NotFoundError(f"jobId: no job {job_id!r}", field="jobId")

    async def get_job(self, job_id: str, principal: Principal) -> JobSnapshot:
        """One job's state."""
        job = self.jobs.get(job_id)
        if job is not None and self._may_see(job.owner, principal):
            return self.snapshot(job)
        row = None
        if job is None and is_id(job_id, "job"):
            row = await self._store.fetchone(
                "SELECT id, tier, model, conversation_id, state, attempts, worker_id, tokens, created_at, error,"
                " owner FROM jobs WHERE id = ?",
                (job_id,),
            )
        if row is None or not self._may_see(row[10], principal):
            raise NotFoundError(f"jobId: no job {job_id!r}", field="jobId")
        return JobSnapshot(
            row[0], row[1], row[2], row[3], JobState(row[4]), row[5], row[6], row[7], row[8], row[9]
        )

    async def get_conversation(self, conversation_id: str, principal: Principal) -> list[tuple[str, str]]:
        """A conversation's messages, oldest first."""
        row = None
        if is_id(conversation_id, "conv"):
            row = await self._store.fetchone(
                "SELECT owner FROM conversations WHERE id = ?", (conversation_id,)
            )
        if row is None or not self._may_see(row[0], principal):
            raise NotFoundError(
                f"conversationId: no conversation {conversation_id!r}", field="conversationId"
            )
        rows = await self._store.fetchall(
            "SELECT role, content FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )
        return [(r, c) for r, c in rows]

    # -- workers: identity ------------------------------------------------------------------

    async def register_worker(self, *, name: str, tiers: list[str], slots: int) -> tuple[str, str, list[str]]:
        """Create a worker; returns (id, token, tiers)."""
        if len(name) > MAX_WORKER_NAME:
            raise InvalidArgumentError(f"name: longer than {MAX_WORKER_NAME} characters", field="name")
        chosen = self._check_tiers(tiers)
        slots = slots or 1
        if not 1 <= slots <= MAX_SLOTS:
            raise InvalidArgumentError(f"slots: must be between 1 and {MAX_SLOTS}", field="slots")
        worker_id = new_id("wrk")
        token = "wtok_" + secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        now = now_ms()
        await self._store.write(
            [
                (
                    "INSERT INTO workers (id, name, token_hash, tiers, slots, created_at, last_seen)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        worker_id,
                        name or worker_id,
                        token_hash,
                        orjson.dumps(sorted(chosen)).decode(),
                        slots,
                        now,
                        now,
                    ),
                ),
            ]
        )
        self._workers[worker_id] = WorkerInfo(worker_id, name or worker_id, chosen, slots)
        self._by_token[token_hash] = worker_id
        return worker_id, token, sorted(chosen)

    @staticmethod
    def _check_tiers(tiers: list[str]) -> frozenset[str]:
        if not tiers:
            return frozenset(CHAT_TIERS)
        for t in tiers:
            if t not in TIERS:
                raise InvalidArgumentError(f"tiers: unknown tier {t!r}", field="tiers")
        return frozenset(tiers)

    def authenticate(self, token: str) -> WorkerInfo:
        """The worker holding ``token``; UNAUTHENTICATED otherwise."""
        if not token:
            raise UnauthenticatedError("worker token required (Authorization: Bearer <workerToken>)")
        worker_id = self._by_token.get(hash_token(token))
        if worker_id is None:
            raise UnauthenticatedError("unknown worker token")
        info = self._workers[worker_id]
        info.last_seen = time.monotonic()
        return info

    # -- workers: the push path -------------------------------------------------------------

    def attach(
        self,
        info: WorkerInfo,
        *,
        slots: int,
        tiers: list[str],
        push: Callable[[str], None],
        cancel: Callable[[str, str], None],
        close: Callable[[str], None],
    ) -> WorkerSlotView:
        """A worker opened its stream: make it dispatchable. A previous stream of it is closed."""
        chosen = self._check_tiers(tiers) if tiers else info.tiers
        if not 1 <= (slots or info.slots) <= MAX_SLOTS:
            raise InvalidArgumentError(f"slots: must be between 1 and {MAX_SLOTS}", field="slots")
        if info.view is not None:
            old = info.view
            close_old = self._closers.get(id(old))
            self.detach(old, reason="replaced by a new connection")
            if close_old is not None:
                close_old("replaced by a new connection")
        view = WorkerSlotView(info.id, chosen, slots or info.slots, push, cancel)
        self._closers[id(view)] = close
        info.view = view
        info.last_seen = time.monotonic()
        self.scheduler.workers[info.id] = view
        self._pump()
        return view

    def detach(self, view: WorkerSlotView, *, reason: str) -> None:
        """A worker's stream ended: its running jobs go back to the queue (or fail). Idempotent."""
        self._closers.pop(id(view), None)
        info = self._workers.get(view.worker_id)
        if info is not None and info.view is view:
            info.view = None
            self.scheduler.workers.pop(view.worker_id, None)
        running = list(view.running)
        view.running.clear()
        view.draining = True
        for job_id in running:
            job = self.jobs.get(job_id)
            if job is not None and job.worker_id == view.worker_id:
                self._retry_or_fail(job, f"worker lost: {reason}", "WORKER_LOST")
        self._pump()

    def drain(self, view: WorkerSlotView) -> None:
        """The worker takes no new jobs; it keeps those it has."""
        view.draining = True

    def touch(self, info: WorkerInfo) -> None:
        """The worker said something: it is alive."""
        info.last_seen = time.monotonic()

    def heartbeat(self, info: WorkerInfo, tokens_per_sec: float) -> None:
        """Liveness and throughput; renews the leases of its pulled jobs."""
        info.last_seen = time.monotonic()
        info.tokens_per_sec = max(0.0, tokens_per_sec)
        deadline = info.last_seen + self._settings.lease_timeout_s
        for job_id in info.pulled:
            job = self.jobs.get(job_id)
            if job is not None:
                job.lease_expires = deadline

    def assignment(self, job_id: str) -> Job | None:
        """The job behind an assignment about to be pushed (None if it vanished meanwhile)."""
        return self.jobs.get(job_id)

    def _pump(self) -> None:
        """Hand queued jobs to stream workers with free slots, highest tier first."""
        while (pair := self.scheduler.next_assignment(self._avoid)) is not None:
            view, job_id = pair
            job = self.jobs.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                continue
            self._assign(job, view.worker_id)
            view.running.add(job_id)
            view.push(job_id)

    def _avoid(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        return job.avoid if job is not None else ""

    def _assign(self, job: Job, worker_id: str) -> None:
        job.state = JobState.ASSIGNED
        job.worker_id = worker_id
        job.last_progress = time.monotonic()
        job.attempts += 1
        job.attempt_base = len(job.log.tokens)
        self._write_behind(
            [
                (
                    "UPDATE jobs SET state='assigned', worker_id=?, attempts=?, updated_at=? WHERE id=?",
                    (worker_id, job.attempts, now_ms(), job.id),
                ),
            ]
        )

    # -- workers: the pull path -------------------------------------------------------------

    def claim(self, info: WorkerInfo, tier: str) -> Job | None:
        """Take the next queued job of ``tier`` (or of any tier the worker serves)."""
        if tier and tier not in TIERS:
            raise InvalidArgumentError(f"tier: unknown tier {tier!r}", field="tier")
        if tier and tier not in info.tiers:
            raise PermissionDeniedError(f"tier: this worker is not registered for {tier!r}", field="tier")
        while (job_id := self.scheduler.pop_for(info.tiers, tier)) is not None:
            job = self.jobs.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                continue
            self._assign(job, info.id)
            job.lease_expires = time.monotonic() + self._settings.lease_timeout_s
            info.pulled.add(job.id)
            return job
        return None

    # -- workers: results (both paths) ------------------------------------------------------

    def _owned(self, info: WorkerInfo, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.worker_id != info.id or job.state not in LIVE[1:]:
            raise PermissionDeniedError(
                f"jobId: job {job_id!r} is not assigned to this worker", field="jobId"
            )
        return job

    def publish(self, info: WorkerInfo, job_id: str, offset: int | None, tokens: list[str]) -> int:
        """Append tokens a worker produced; a resent run (by ``offset``) is not counted twice."""
        job = self._owned(info, job_id)
        have = job.attempt_tokens
        if offset is None:
            offset = have
        if offset > have:
            raise InvalidArgumentError(
                f"offset: {offset} leaves a gap after the {have} tokens received", field="offset"
            )
        fresh = tokens[have - offset :]
        room = job.max_tokens - len(job.log.tokens)
        if len(fresh) > room:
            fresh = fresh[: max(0, room)]
        if fresh:
            job.state = JobState.STREAMING
            job.log.append(fresh)
            job.last_progress = time.monotonic()
            self.meter.add(len(fresh))
        if job.lease_expires:
            job.lease_expires = time.monotonic() + self._settings.lease_timeout_s
        return job.attempt_tokens

    def complete(self, info: WorkerInfo, job_id: str) -> int:
        """The job is done: persist the reply and pay out, then publish ``done``. Returns the token count."""
        job = self._owned(info, job_id)
        n = len(job.log.tokens)
        self._release(job, info)
        now = now_ms()
        booking = self._billing.payout(job_id=job.id, tier=job.tier, cost=job.cost, worker_id=info.id)
        statements: list[Statement] = [
            (
                "UPDATE jobs SET state='done', tokens=?, output=?, updated_at=? WHERE id=?",
                (n, orjson.dumps(job.log.tokens).decode(), now, job.id),
            ),
            (
                "INSERT INTO messages (conversation_id, role, content, job_id, created_at) VALUES (?,?,?,?,?)",
                (job.conversation_id, "assistant", job.log.text, job.id, now),
            ),
            (
                "UPDATE workers SET jobs_completed = jobs_completed + 1, tokens_generated = tokens_generated + ?,"
                " last_seen = ? WHERE id = ?",
                (n, now, info.id),
            ),
        ]
        self._finalize(job, JobState.DONE, statements, booking, Terminal("done", tokens=n))
        self._pump()
        return n

    def fail(self, info: WorkerInfo, job_id: str, message: str, retryable: bool) -> JobState:
        """The worker gave up the job: retry elsewhere when allowed, else fail it."""
        job = self._owned(info, job_id)
        self._release(job, info)
        if retryable:
            self._retry_or_fail(job, message or "worker failed", "WORKER_FAILED")
        else:
            self._finish_failed(job, message or "the worker could not run this job", "WORKER_FAILED")
        self._pump()
        return job.state

    def _release(self, job: Job, info: WorkerInfo) -> None:
        info.pulled.discard(job.id)
        if info.view is not None:
            info.view.running.discard(job.id)
        job.lease_expires = 0.0

    def _retry_or_fail(self, job: Job, message: str, reason: str) -> None:
        job.avoid = job.worker_id  # another worker, if there is one, gets the next attempt
        if job.attempts >= self._settings.max_attempts:
            self._finish_failed(job, f"{message} (after {job.attempts} attempts)", "ATTEMPTS_EXHAUSTED")
            return
        job.state = JobState.QUEUED
        job.worker_id = ""
        job.lease_expires = 0.0
        job.queued_at = time.monotonic()
        self.scheduler.enqueue(job.tier, job.owner, job.id, front=True)
        self._write_behind(
            [
                ("UPDATE jobs SET state='queued', worker_id='', updated_at=? WHERE id=?", (now_ms(), job.id)),
            ]
        )
        log.info("job %s requeued: %s", job.id, message)

    def _finish_failed(self, job: Job, message: str, reason: str, state: JobState = JobState.FAILED) -> None:
        job.error = message
        booking = self._billing.refund(job_id=job.id, cost=job.cost, payer=job.payer)
        statements: list[Statement] = [
            (
                "UPDATE jobs SET state=?, error=?, tokens=?, output=?, updated_at=? WHERE id=?",
                (
                    state.value,
                    message,
                    len(job.log.tokens),
                    orjson.dumps(job.log.tokens).decode(),
                    now_ms(),
                    job.id,
                ),
            ),
        ]
        self._finalize(job, state, statements, booking, Terminal("error", message=message, reason=reason))

    def _finalize(
        self,
        job: Job,
        state: JobState,
        statements: list[Statement],
        booking: Booking,
        terminal: Terminal,
        image: StoredImage | None = None,
    ) -> None:
        """End a job: one unit writes its state and its money; its last event goes out once durable."""
        job.state = state
        fut = self._store.submit(statements + booking.statements)
        self._pending_writes.add(fut)

        def persisted(f: asyncio.Future[None]) -> None:
            self._pending_writes.discard(f)
            self.jobs.pop(job.id, None)
            if f.cancelled() or f.exception() is not None:
                # Nothing was written: the store still holds the job as unfinished with its escrow,
                # and a restart requeues it. Memory follows the store.
                self.ledger.revert(booking.moves)
                log.error(
                    "could not persist the end of %s: %s", job.id, None if f.cancelled() else f.exception()
                )
                job.state = JobState.FAILED
                job.log.finish(
                    Terminal("error", message="the result could not be stored", reason="STORE_FAILED")
                )
            else:
                if state == JobState.DONE:
                    self.jobs_completed += 1
                job.log.finish(terminal)
            self._finished.put(job.log)
            self.outcomes.append(job.state)
            if job.result is not None and not job.result.done():
                t = job.log.terminal
                failed = t is None or t.kind != "done" or image is None
                job.result.set_result(
                    ImageOutcome(None, t.message if t else "failed") if failed else ImageOutcome(image)
                )

        fut.add_done_callback(persisted)

    def _write_behind(self, statements: list[Statement]) -> None:
        """Write without waiting: used where losing the write in a crash is recovered at restart."""
        fut = self._store.submit(statements)
        self._pending_writes.add(fut)
        fut.add_done_callback(self._written)

    def _written(self, fut: asyncio.Future[None]) -> None:
        self._pending_writes.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("write-behind failed: %s", fut.exception())

    # -- images -----------------------------------------------------------------------------

    async def submit_image(
        self, principal: Principal, params: ImageParams
    ) -> tuple[str, asyncio.Future[ImageOutcome]]:
        """Charge the image tier and queue an image job; returns its id and the future of its picture."""
        if self._closing:
            raise UnavailableError("the core is shutting down")
        spec = TIERS["image"]
        now = now_ms()
        payer = principal.user_id
        job = Job(
            new_id("job"), spec.name, spec.model, "", principal.owner, 0, [], now, spec.credit_cost, payer
        )
        job.image = params
        job.result = asyncio.get_running_loop().create_future()
        statements: list[Statement] = [
            (
                "INSERT INTO jobs (id, tier, model, conversation_id, owner, state, max_tokens, cost, payer,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    spec.name,
                    spec.model,
                    "",
                    job.owner,
                    JobState.QUEUED.value,
                    0,
                    job.cost,
                    payer,
                    now,
                    now,
                ),
            )
        ]
        booking = self._billing.charge(job_id=job.id, tier=spec.name, payer=payer) if job.cost else NOTHING
        try:
            await self._store.write(statements + booking.statements)
        except StoreError as exc:
            self.ledger.revert(booking.moves)
            raise UnavailableError(f"could not persist the request: {exc}") from exc
        job.queued_at = time.monotonic()
        self.jobs[job.id] = job
        self.scheduler.enqueue(spec.name, job.owner, job.id)
        self._pump()
        return job.id, job.result

    async def complete_image(self, info: WorkerInfo, job_id: str, data: bytes, mime_type: str) -> None:
        """A worker delivered the picture: store it, then end the job and pay out in one unit."""
        job = self._owned(info, job_id)
        if job.image is None:
            raise InvalidArgumentError("image: this is not an image job", field="image")
        real = sniff(data)
        if not real or len(data) > MAX_IMAGE_BYTES:
            raise InvalidArgumentError(
                f"image: not a PNG, JPEG or WebP of at most {MAX_IMAGE_BYTES} bytes", field="image"
            )
        if mime_type and mime_type != real:
            raise InvalidArgumentError(f"image: bytes are {real}, not {mime_type}", field="image")
        digest = await asyncio.to_thread(self.image_store.put, data, real)
        job = self._owned(info, job_id)  # it may have been cancelled while the file was written
        self._release(job, info)
        p = job.image
        assert p is not None
        image = StoredImage(new_id("img"), p.prompt, p.style, p.aspect, digest, real)
        now = now_ms()
        statements: list[Statement] = [
            ("UPDATE jobs SET state='done', updated_at=? WHERE id=?", (now, job.id)),
            (
                "INSERT INTO images (id, job_id, owner, prompt, style, aspect, sha256, mime_type, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (image.id, job.id, job.owner, p.prompt, p.style, p.aspect, digest, real, now),
            ),
            (
                "UPDATE workers SET jobs_completed = jobs_completed + 1, last_seen = ? WHERE id = ?",
                (now, info.id),
            ),
        ]
        booking = self._billing.payout(job_id=job.id, tier=job.tier, cost=job.cost, worker_id=info.id)
        self._finalize(job, JobState.DONE, statements, booking, Terminal("done"), image)
        self._pump()

    def cancel(self, job_id: str, reason: str) -> None:
        """Stop a live job (its worker is told) and refund it. A finished job is left as it is."""
        job = self.jobs.get(job_id)
        if job is None or job.state.terminal:
            return
        if job.state == JobState.QUEUED:
            self.scheduler.queues[job.tier].remove(job.owner, job.id)
        else:
            info = self._workers.get(job.worker_id)
            if info is not None:
                self._release(job, info)
                if info.view is not None:
                    info.view.cancel(job.id, reason)
        self._finish_failed(job, reason, "CANCELLED", JobState.CANCELLED)
        self._pump()

    # -- time -------------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                self.reap(time.monotonic())
            except Exception:
                log.exception("reaper pass failed")

    def reap(self, now: float) -> None:
        """Lose silent stream workers, requeue expired pull leases, expire old queued jobs."""
        for info in self._workers.values():
            view = info.view
            if view is not None and now - info.last_seen > self.heartbeat_timeout_s:
                closer = self._closers.get(id(view))
                self.detach(view, reason="missed heartbeats")
                if closer is not None:
                    closer("missed heartbeats")
        stall = self._settings.job_stall_timeout_s
        for job in list(self.jobs.values()):
            if (
                not job.lease_expires
                and job.image is None
                and job.state in LIVE[1:]
                and now - job.last_progress > stall
            ):
                # A stream worker that stays alive but stopped producing for this job: take it back.
                holder = self._workers.get(job.worker_id)
                if holder is not None:
                    self._release(job, holder)
                    if holder.view is not None:
                        holder.view.cancel(job.id, f"no token for {stall:.0f} s")
                self._retry_or_fail(job, f"no token for {stall:.0f} s", "STALLED")
            elif job.lease_expires and job.lease_expires < now and job.state in LIVE[1:]:
                owner = self._workers.get(job.worker_id)
                if owner is not None:
                    owner.pulled.discard(job.id)
                self._retry_or_fail(job, "worker lease expired", "LEASE_EXPIRED")
            elif job.state == JobState.QUEUED and now - job.queued_at > self._settings.queue_timeout_s:
                if self.scheduler.queues[job.tier].remove(job.owner, job.id):
                    self._finish_failed(job, "no worker took the job in time", "EXPIRED", JobState.EXPIRED)
        self._pump()

    def oldest_wait(self, now: float | None = None) -> float:
        """Seconds the longest-waiting queued job has waited (0 if none)."""
        now = time.monotonic() if now is None else now
        waits = [now - j.queued_at for j in self.jobs.values() if j.state == JobState.QUEUED]
        return max(waits, default=0.0)

    def slots(self) -> tuple[int, int]:
        """(slots of live stream workers, of which busy)."""
        views = list(self.scheduler.workers.values())
        return sum(v.slots for v in views), sum(len(v.running) for v in views)

    def serving(self, tier: str) -> bool:
        """Whether a live stream worker that serves ``tier`` can take jobs."""
        return any(tier in v.tiers and not v.draining for v in self.scheduler.workers.values())

    def snapshot(self, job: Job) -> JobSnapshot:
        """A live job's state."""
        return JobSnapshot(
            job.id,
            job.tier,
            job.model,
            job.conversation_id,
            job.state,
            job.attempts,
            job.worker_id,
            len(job.log.tokens),
            job.created_at_ms,
            job.error,
        )

    async def worker_account(self, info: WorkerInfo) -> WorkerAccount:
        """A worker's earnings (from the ledger) and stats (from the store)."""
        row = await self._store.fetchone(
            "SELECT jobs_completed, tokens_generated FROM workers WHERE id = ?", (info.id,)
        )
        jobs, tokens = (int(row[0]), int(row[1])) if row else (0, 0)
        return WorkerAccount(self.ledger.balance(worker_account(info.id)), jobs, tokens)

    # -- figures ----------------------------------------------------------------------------

    def stats(self) -> Stats:
        """Live figures for /api/stats."""
        now = time.monotonic()
        active = sum(
            1
            for w in self._workers.values()
            if w.view is not None or (w.last_seen and now - w.last_seen < self._settings.lease_timeout_s)
        )
        return Stats(active, self.scheduler.depth, self.jobs_completed, self.meter.rate())
