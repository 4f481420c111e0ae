"""Admission: a send (or an image request) becomes a charged, durable, queued job.

Everything is checked before anything is written; the message, the conversation, the job and the
charge go in one unit, and the job is queued (and dispatched) only once that unit has committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from core.config import CoreSettings
from core.economics import TIERS, Tier
from core.errors import (
    ConflictError,
    InvalidArgumentError,
    PaymentRequiredError,
    UnauthenticatedError,
    UnavailableError,
)
from core.identity.principal import Principal
from core.identity.ratelimit import Limiter
from core.ids import is_id, new_id
from core.jobs.ask import ChatAsk
from core.jobs.board import JobBoard
from core.jobs.model import ImageParams, Job
from core.jobs.repository import JobRepository
from core.jobs.trace import JobTrace
from core.money.billing import Billing, Booking
from core.store import ConstraintError, Statement, Store, StoreError, now_ms
from core.streams.log import Terminal

MAX_IDEMPOTENCY_KEY = 128
IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
"""How long a send's idempotency key protects it against a repeat."""


class Sent(NamedTuple):
    """An admitted send: its job, its conversation, the answer's token budget, the prompt estimate."""

    job_id: str
    conversation_id: str
    max_tokens: int
    prompt_tokens: int


class Admission:
    """Turns requests into queued jobs."""

    def __init__(
        self,
        *,
        store: Store,
        board: JobBoard,
        repo: JobRepository,
        billing: Billing,
        settings: CoreSettings,
        wake: Callable[[], None],
        limiter: Limiter,
    ) -> None:
        self._store = store
        self._board = board
        self._repo = repo
        self._billing = billing
        self._settings = settings
        self._wake = wake
        self._limiter = limiter
        self._inflight: dict[tuple[str, str], asyncio.Future[tuple[str, str]]] = {}
        self.on_repeat: Callable[[str], Awaitable[None]] | None = None
        """Called with the job id when a send is repeated (its idempotency key): several cores set it
        to queue the job again if it was never queued (a store that failed to answer may have
        committed the first send, which was then refused and never queued)."""

    async def send(self, ask: ChatAsk, principal: Principal) -> Sent:
        """Validate, charge, persist the message (and conversation), queue the job.

        Returns once all of it is durable in one unit. With an idempotency key, a repeat of the same send
        by the same caller returns the first send's ids instead.
        """
        spec = ask.spec()
        key = ask.idempotency_key
        if not key:
            job_id, conversation_id = await self._send(ask, spec, principal, None)
            return Sent(job_id, conversation_id, ask.budget(spec), ask.prompt_tokens)
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgumentError(
                f"idempotencyKey: longer than {MAX_IDEMPOTENCY_KEY} characters", field="idempotencyKey"
            )
        slot = (principal.owner, key)
        digest = ask.digest()
        while (running := self._inflight.get(slot)) is not None:
            try:
                ids = await asyncio.shield(running)  # the same send is being admitted right now
                return Sent(*ids, ask.budget(spec), ask.prompt_tokens)
            except Exception:
                continue  # it failed: this one tries for itself
        done: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = done
        try:
            since = now_ms() - IDEMPOTENCY_WINDOW_MS
            earlier = await self._repo.idempotent(principal.owner, key, since)
            result: tuple[str, str] | None = None
            if earlier is None:
                try:
                    result = await self._send(ask, spec, principal, (key, digest))
                except ConstraintError as exc:
                    # Another core may have admitted the same key meanwhile: then that is the send.
                    earlier = await self._repo.idempotent(principal.owner, key, since)
                    if earlier is None:
                        raise PaymentRequiredError(f"not enough credits for tier {spec.name}") from exc
            if result is None:
                assert earlier is not None
                if earlier[0] != digest:
                    raise ConflictError(
                        "idempotencyKey: already used for a different message", field="idempotencyKey"
                    )
                result = earlier[1], earlier[2]
                if self.on_repeat is not None:
                    await self.on_repeat(result[0])
            done.set_result(result)

            return Sent(*result, ask.budget(spec), ask.prompt_tokens)
        except BaseException as exc:
            done.set_exception(exc if isinstance(exc, Exception) else UnavailableError("cancelled"))
            done.exception()  # marked retrieved: there may be no waiter
            raise
        finally:
            del self._inflight[slot]

    async def _send(
        self,
        ask: ChatAsk,
        spec: Tier,
        principal: Principal,
        keyed: tuple[str, str] | None,
    ) -> tuple[str, str]:
        if self._board.closing:
            raise UnavailableError("the core is shutting down")
        ask.check(spec, self._settings)
        tier = spec.name
        if spec.credit_cost and principal.kind not in ("user", "service"):
            raise UnauthenticatedError(f"tier {tier} costs {spec.credit_cost} credits: sign in first")
        if not spec.credit_cost and principal.kind != "service":
            await self._limiter.admit(
                principal.owner, principal.ip
            )  # free work is bounded per caller and address
        owner = principal.owner
        now = now_ms()
        job_id = new_id("job")
        statements: list[Statement] = []
        conversation_id = ask.conversation_id
        if ask.messages:  # stateless: a new conversation holding what the caller sent
            conversation_id = new_id("conv")
            statements.append(JobRepository.new_conversation(conversation_id, owner, now))
            messages = list(ask.messages)
            last = len(messages) - 1
            statements += [
                JobRepository.new_message(conversation_id, role, text, job_id if i == last else "", now)
                for i, (role, text) in enumerate(messages)
            ]
        elif conversation_id:
            if not is_id(conversation_id, "conv"):
                raise InvalidArgumentError("conversationId: malformed id", field="conversationId")
            found = await self._repo.conversation_owner(conversation_id)
            if found is None or not principal.may_see(found):
                raise InvalidArgumentError("conversationId: unknown conversation", field="conversationId")
            messages = await self._repo.latest_messages(
                conversation_id, self._settings.max_history_messages - 1
            )
            messages.append(("user", ask.content))
            statements.append(JobRepository.new_message(conversation_id, "user", ask.content, job_id, now))
        else:
            conversation_id = new_id("conv")
            statements.append(JobRepository.new_conversation(conversation_id, owner, now))
            messages = [("user", ask.content)]
            statements.append(JobRepository.new_message(conversation_id, "user", ask.content, job_id, now))
        payer = principal.user_id if spec.credit_cost and principal.kind == "user" else ""
        job = Job(
            job_id,
            tier,
            spec.model,
            conversation_id,
            owner,
            ask.budget(spec),
            messages,
            now,
            spec.credit_cost,
            payer,
            sampling=ask.sampling,
        )
        statements.append(JobRepository.new_job(job, now))
        if keyed is not None:
            statements.append(
                JobRepository.idempotency(owner, keyed[0], keyed[1], job.id, conversation_id, now)
            )
        # No await between the balance check and the submit: admission is atomic per payer.
        booking = self._billing.charge(job_id=job.id, tier=tier, payer=payer)
        # Handed out while it commits, except a keyed send (a repeat must find the first one's answer
        # before anything runs) and on the cluster's queue (it publishes only what is durable).
        if keyed is None and not self._board.queue.shared:
            return await self._send_early(job, statements + booking.statements, booking)
        try:
            await self._store.write(statements + booking.statements)
        except ConstraintError as exc:
            self._billing.undo(booking)
            if keyed is not None:
                raise  # the key may have been taken meanwhile by another core: the caller looks
            if not booking.moves:
                raise StoreError("could not store the message; nothing was queued or charged") from exc
            raise PaymentRequiredError(f"not enough credits for tier {tier}") from exc

        except StoreError as exc:
            self._billing.undo(booking)
            raise StoreError("could not store the message; nothing was queued or charged") from exc
        except BaseException:
            self._billing.undo(booking)
            raise
        self._board.last_send_at = time.monotonic()
        self._queue(job)
        return job.id, conversation_id

    async def _send_early(self, job: Job, unit: list[Statement], booking: Booking) -> tuple[str, str]:
        """Queue (and hand out) the job while the unit that admits it commits; answer once it is durable.

        The worker may start on it a commit earlier, but nothing of the job outlives a failed unit: its
        end is written only after its admission (``Settler.finalize``), the store commits units in the
        order they were submitted (so its assignment's row changes follow its row), and if the unit
        fails the job is withdrawn — taken out of the queue, or its worker told to stop — and its
        charge undone. The caller learns its id only once it is durable.
        """
        try:
            written = self._store.submit(unit)
        except BaseException:
            self._billing.undo(booking)
            raise
        job.durable = written
        written.add_done_callback(lambda f: self._admitted(job, booking, f))
        self._board.last_send_at = time.monotonic()
        self._queue(job)
        try:
            await asyncio.shield(written)
        except ConstraintError as exc:
            if not booking.moves:
                raise StoreError("could not store the message; nothing was queued or charged") from exc
            raise PaymentRequiredError(f"not enough credits for tier {job.tier}") from exc
        except StoreError as exc:
            raise StoreError("could not store the message; nothing was queued or charged") from exc
        return job.id, job.conversation_id

    def _admitted(self, job: Job, booking: Booking, written: asyncio.Future[None]) -> None:
        """The unit admitting an early-queued job is durable (it stays), or failed (it never was)."""
        if not written.cancelled() and written.exception() is None:
            job.durable = None
            return
        self._billing.undo(booking)
        info = self._board.withdraw(job)
        conn = info.connection if info is not None else None
        if conn is not None:
            conn.link.cancel(job.id, "the message could not be stored")
        if job.trace is not None:
            job.trace.lost("the message could not be stored")
        job.log.finish(Terminal("error", message="the message could not be stored", reason="STORE_FAILED"))
        self._wake()

    def _queue(self, job: Job) -> None:
        """A durable job joins its queue (traced under the current span while tracing is on)."""
        if self._board.tracer is not None:
            job.trace = JobTrace(self._board.tracer, job.id, job.tier)
        self._board.add(job)
        self._wake()

    async def prune_keys(self) -> None:
        """Forget idempotency keys past their window (run on a schedule)."""
        await self._repo.prune_idempotency(now_ms() - IDEMPOTENCY_WINDOW_MS)

    async def submit_image(self, principal: Principal, params: ImageParams) -> str:
        """Charge the image tier and queue an image job; returns its id (its end is on its event log)."""
        if self._board.closing:
            raise UnavailableError("the core is shutting down")
        spec = TIERS["image"]
        now = now_ms()
        payer = principal.user_id
        job = Job(
            new_id("job"), spec.name, spec.model, "", principal.owner, 0, [], now, spec.credit_cost, payer
        )
        job.image = params
        booking = self._billing.charge(job_id=job.id, tier=spec.name, payer=payer)
        try:
            await self._store.write([JobRepository.new_job(job, now), *booking.statements])
        except ConstraintError as exc:
            self._billing.undo(booking)
            raise PaymentRequiredError("not enough credits for an image") from exc
        except StoreError as exc:
            self._billing.undo(booking)
            raise StoreError("could not store the request; nothing was charged") from exc

        except BaseException:
            self._billing.undo(booking)
            raise
        self._queue(job)
        return job.id
