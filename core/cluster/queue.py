"""The job queue several cores share: a JetStream work-queue stream, one subject per tier.

Admission publishes a job (its id; the job itself is in PostgreSQL) once its unit has committed, with
the job id as the message id, so a publish repeated after a failure is not a second job. Each core
pulls from a durable consumer per tier — shared by every core, so each message goes to one core — only
as many jobs as its connected workers have free slots: dispatch stays a push to the worker, and no job
waits behind a busy core. A pulled job is held (not acknowledged) while it runs here, and its hold is
renewed while it does; it is acknowledged when it ends. If this core dies, the holds lapse after
``ack_wait_s`` and JetStream hands its jobs to another core. A job this core pulled but cannot start
(its worker went away) is handed back (``release``).

The local side is a ``LocalQueues``: what this core pulled, in the order it hands them out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from core.economics import TIERS_BY_PRIORITY
from core.jobs.queue import LocalQueues

log = logging.getLogger("ashao.core.cluster")


LAPSED_AFTER = 0.75
"""A pulled job whose hold was last confirmed (pulled, or renewed and the renewal known to have reached
NATS) more than this share of ``ack_wait_s`` ago may have been handed to another core: it is not handed
out from this core's line until it has been looked at again (``take_lapsed``)."""
FETCH_REPLY_S = 2.0
"""How long one pull waits for JetStream's answer (it answers at once: jobs, or "none now")."""
POLL_S = 0.5
"""How often an idle core looks for jobs without being woken (redeliveries are not announced)."""

Adopt = Callable[[str, str], Awaitable[bool]]
"""Loads a pulled job (tier, job id) and puts it on this core's board; False if it is not to run (it is
acknowledged: nobody gets it again); raises ``HeldElsewhere`` to have it handed back for a while."""
Wanted = Callable[[str], int]
"""How many more jobs of a tier this core's workers can start now."""


class HeldElsewhere(Exception):
    """Raised by ``Adopt``: the job is not to run here now, but must not be dropped either (the core that
    holds it looks live, yet its hold lapsed: it may have died); the queue hands it back for
    ``retry_s``."""

    def __init__(self, retry_s: float) -> None:
        super().__init__(f"held by another core; looked at again in {retry_s} s")
        self.retry_s = retry_s


@dataclass(slots=True)
class _Held:
    msg: Msg
    tier: str
    since: float
    owner: str = ""
    running: bool = False
    confirmed: float = 0.0
    """When the hold was last known to be fresh (pulled, or a renewal reached NATS)."""


class JetStreamQueue:
    """The shared queue, as this core sees it."""

    shared = True

    def __init__(self, *, cluster: str = "ashao", ack_wait_s: float = 30.0, replicas: int = 1) -> None:
        """``cluster``: the name of the cluster, which names its stream, subjects and consumers (several
        clusters may share one NATS)."""
        self._stream = f"{cluster.upper().replace('-', '_')}_JOBS"
        self._subject = f"{cluster}.jobs.{{tier}}"
        self._durable = f"{cluster}-{{tier}}"
        self._wake_subject = f"{cluster}.wake"
        self._nc: Client | None = None
        self._js_context: JetStreamContext | None = None
        self._local = LocalQueues()
        self._held: dict[str, _Held] = {}
        self._inboxes: dict[str, Subscription] = {}
        """Per tier, where JetStream answers this core's pulls."""
        self.ack_wait_s = ack_wait_s
        """How long a hold lasts unless renewed."""
        self._replicas = replicas
        self._publishing: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._lapsed: list[str] = []
        """Jobs taken out of the line because their hold may have lapsed (see ``take_lapsed``)."""
        self._waking: set[str] = set()
        """Tiers whose wake-up is about to be sent."""
        self.published = 0
        self.pulled = 0
        self.publish_failures = 0
        """Publishes that failed (the jobs stay queued in the store; the sweeper publishes them again)."""

    @property
    def _js(self) -> JetStreamContext:
        if self._js_context is None:
            raise RuntimeError("the job queue is not open")
        return self._js_context

    async def open(self, nc: Client) -> None:
        """Create the stream and the per-tier consumers if they do not exist yet, and listen for the
        word that a job was published (every core then pulls at once, rather than at its next poll)."""
        self._nc = nc
        self._js_context = nc.jetstream()
        await nc.subscribe(self._wake_subject, cb=self._woken)

        config = StreamConfig(
            name=self._stream,
            subjects=[self._subject.format(tier="*")],
            retention=RetentionPolicy.WORK_QUEUE,
            num_replicas=self._replicas,
            duplicate_window=120.0,
        )
        try:
            await self._js.stream_info(self._stream)
            await self._js.update_stream(config)
        except NotFoundError:
            await self._js.add_stream(config)
        for tier in TIERS_BY_PRIORITY:
            durable = self._durable.format(tier=tier)
            consumer = ConsumerConfig(
                durable_name=durable,
                filter_subject=self._subject.format(tier=tier),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_deliver=-1,
                max_ack_pending=100_000,
            )
            try:
                await self._js.consumer_info(self._stream, durable)
            except NotFoundError:
                await self._js.add_consumer(self._stream, consumer)
            self._inboxes[tier] = await nc.subscribe(nc.new_inbox())

    # -- JobQueue ---------------------------------------------------------------------------------

    def push(self, tier: str, owner: str, job_id: str, *, front: bool = False) -> None:
        """A job to run: one this core holds goes back on its local line; a new one is published."""
        if job_id in self._held:
            self._held[job_id].running = False
            self._local.push(tier, owner, job_id, front=front)
            return
        self.publish(tier, job_id)

    def publish(self, tier: str, job_id: str) -> None:
        """Publish ``job_id`` on its tier (not waiting; a failure leaves it to the sweeper)."""
        task = asyncio.create_task(self._publish(tier, job_id))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, tier: str, job_id: str) -> None:
        """Publish a job and, once JetStream has it, wake the cores: one wake-up for the jobs of a tier
        whose acknowledgements arrive together. (JetStream's publish is a request whose answer says
        whether the stream took it; read here with orjson, not parsed into a PubAck per job.)"""
        nc = self._nc
        try:
            if nc is None:
                raise RuntimeError("the job queue is not open")
            answer = await nc.request(
                self._subject.format(tier=tier), job_id.encode(), headers={"Nats-Msg-Id": job_id}, timeout=5.0
            )
            refused = orjson.loads(answer.data).get("error")
            if refused is not None:
                raise RuntimeError(f"JetStream refused it: {refused}")
            self.published += 1
            if tier in self._waking:
                return  # (a wake-up for this tier goes out after this job's acknowledgement)
            self._waking.add(tier)
            try:
                await asyncio.sleep(0)  # the acknowledgements read with this one resume first
                await nc.publish(self._wake_subject, tier.encode())
            finally:
                self._waking.discard(tier)
        except Exception as exc:  # the job is durable in the store: the sweeper publishes it again
            self.publish_failures += 1
            log.warning("could not publish job %s (%s); it will be published again", job_id, exc)

    def peek(self, tier: str) -> str | None:
        """The next job this core pulled for ``tier`` (one whose hold may have lapsed leaves the line)."""
        stale = time.monotonic() - self.ack_wait_s * LAPSED_AFTER
        while (job_id := self._local.peek(tier)) is not None:
            held = self._held.get(job_id)
            if held is None or held.confirmed >= stale or not self._local.remove(tier, held.owner, job_id):
                return job_id
            self._lapsed.append(job_id)
        return None

    def take_lapsed(self) -> list[str]:
        """Jobs ``peek`` took out of the line since the last call: their holds may have lapsed (this
        core's link to NATS was lost a while), so another core may have them now. Each is to be handed
        back (``release``), or looked up in the store and put back (``line``)."""
        lapsed, self._lapsed = self._lapsed, []
        return lapsed

    def line(self, tier: str, owner: str, job_id: str) -> None:
        """Put a job this core keeps back at the front of its line (after ``take_lapsed``), its hold
        counted as fresh: the store says the job is this core's."""
        held = self._held.get(job_id)
        if held is not None:
            held.running = False
            held.confirmed = time.monotonic()
        self._local.push(tier, owner, job_id, front=True)

    def pop(self, tier: str) -> str | None:
        """Hand out the next job this core pulled for ``tier``."""
        job_id = self._local.pop(tier)
        if job_id is not None and job_id in self._held:
            self._held[job_id].running = True
        return job_id

    def remove(self, tier: str, owner: str, job_id: str) -> bool:
        """Take a pulled job out of the local line (it ends: cancelled, expired)."""
        return self._local.remove(tier, owner, job_id)

    def depth(self, tier: str | None = None) -> int:
        """Jobs pulled here and not handed out yet."""
        return self._local.depth(tier)

    def adopt(self, tier: str, owner: str, job_id: str) -> None:
        """A pulled job joins the local line."""
        if job_id in self._held:
            self._held[job_id].owner = owner
        self._local.adopt(tier, owner, job_id)

    def idle(self, older_than_s: float) -> list[str]:
        """Jobs pulled here that have waited in the local line longer than ``older_than_s``."""
        now = time.monotonic()
        return [j for j, h in self._held.items() if not h.running and now - h.since > older_than_s]

    def release(self, job_id: str, *, lapsed: bool = False) -> bool:
        """Hand a job this core pulled but did not start back to the shared queue (another core may
        run it now); False if it is not waiting here (in the line, or, with ``lapsed``, among the jobs
        ``take_lapsed`` gave)."""
        held = self._held.get(job_id)
        if held is None or held.running:
            return False
        if not self._local.remove(held.tier, held.owner, job_id) and not lapsed:
            return False
        del self._held[job_id]
        task = asyncio.create_task(_quietly(held.msg.nak()))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)
        return True

    def ended(self, job_id: str) -> None:
        """The job ended here: acknowledge it, so no other core gets it."""
        held = self._held.pop(job_id, None)
        if held is not None:
            task = asyncio.create_task(_quietly(held.msg.ack()))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    # -- the pulling loop -------------------------------------------------------------------------

    def wake(self) -> None:
        """Workers have room (a slot freed, a worker connected): pull now rather than at the next poll."""
        self._wake.set()

    async def _woken(self, msg: Msg) -> None:
        """A core published a job: pull now if this core's workers have room."""
        self._wake.set()

    async def pull(self, wanted: Wanted, adopt: Adopt) -> None:
        """Pull jobs for the workers' free slots, forever (run it under a supervisor)."""
        while True:
            pulled = 0
            self._wake.clear()  # (a wake-up during the pass below makes the wait after it return at once)
            for tier in TIERS_BY_PRIORITY:
                want = wanted(tier) - self._local.depth(tier)
                if want <= 0:
                    continue
                # what is there now (a wake-up or the next poll brings the rest)
                msgs = await self._fetch_now(tier, min(want, 256))
                pulled += len(msgs)
                # taken at once (each is read from the store): a batch joins the line as its jobs load
                await asyncio.gather(*(self._take(tier, msg, adopt) for msg in msgs))
            if not pulled:
                try:
                    async with asyncio.timeout(POLL_S):
                        await self._wake.wait()
                except TimeoutError:
                    pass

    async def _take(self, tier: str, msg: Msg, adopt: Adopt) -> None:
        """Hold a pulled job and put it on this core's board (or acknowledge it if it is not to run, or
        hand it back if it cannot be taken now)."""
        job_id = msg.data.decode()
        now = time.monotonic()
        self._held[job_id] = _Held(msg, tier, now, confirmed=now)
        self.pulled += 1
        try:
            keep = await adopt(tier, job_id)
        except HeldElsewhere as later:
            # Not this core's to run now, nor to drop: its holder may have died (its record outlives it
            # a while). Handed back, to be looked at again after a pause.
            self._held.pop(job_id, None)
            await _quietly(msg.nak(delay=later.retry_s))
            return
        except Exception:
            log.exception("could not take job %s; handing it back", job_id)
            self._held.pop(job_id, None)
            await _quietly(msg.nak(delay=1.0))
            return
        if not keep:  # ended already, or not a job to run: nobody should get it again
            self.ended(job_id)

    async def _fetch_now(self, tier: str, batch: int) -> list[Msg]:
        """Up to ``batch`` jobs of ``tier`` that are there now, without waiting for more (a wake-up or the
        next poll brings the rest): a pull with ``no_wait`` and no expiry, which JetStream answers at once
        with the jobs it has, then a "no messages" status if they were fewer. (A client ``fetch`` sends an
        expiry with its pull, and the server then holds the pull for that long when the tier is empty:
        every empty tier cost each pass that wait.)"""
        assert self._nc is not None
        inbox = self._inboxes[tier]
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable.format(tier=tier)}",
            orjson.dumps({"batch": batch, "no_wait": True}),
            reply=inbox.subject,
        )
        msgs: list[Msg] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FETCH_REPLY_S
        while len(msgs) < batch:
            try:
                msg = await inbox.next_msg(timeout=max(0.001, deadline - loop.time()))
            except (NatsTimeout, TimeoutError):
                break  # (an answer that comes later is taken by the next pull)
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                msgs.append(msg)
            elif status != "100":  # (100: an idle heartbeat) 404 none now, 408 fewer than asked: over
                break
        return msgs

    async def renew(self) -> None:
        """One pass: renew the holds of every job held here (run it every third of ``ack_wait_s``); once
        NATS has answered a ping sent after them, they are known to be fresh."""
        started = time.monotonic()
        holds = list(self._held.values())
        for held in holds:
            await _quietly(held.msg.in_progress())
        if self._nc is None or not holds:
            return
        try:
            await self._nc.flush(timeout=max(1, int(self.ack_wait_s / 3)))
        except Exception as exc:  # not confirmed: the holds may lapse (see ``peek``)
            log.debug("renewals of %d holds not confirmed: %s", len(holds), exc)
            return
        for held in holds:
            held.confirmed = max(held.confirmed, started)

    async def waiting(self) -> int:
        """Jobs published and not pulled by any core yet (every tier)."""
        total = 0
        for tier in TIERS_BY_PRIORITY:
            info = await self._js.consumer_info(self._stream, self._durable.format(tier=tier), timeout=2.0)
            total += int(info.num_pending or 0)
        return total

    async def drain(self) -> None:
        """Wait for publishes and acknowledgements in flight (bounded)."""
        if self._publishing:
            await asyncio.wait(set(self._publishing), timeout=5.0)


async def _quietly(op: Awaitable[object]) -> None:
    try:
        await op
    except Exception as exc:  # a lapsed hold is redelivered: nothing is lost by a failed ack here
        log.debug("JetStream acknowledgement failed: %s", exc)
