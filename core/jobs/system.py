"""The job system assembled: its state, its transitions, dispatch, admission, queries and the reaper,
with start-up recovery and an ordered shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

from ashao_common.supervise import Loop, every
from ashao_common.tracing import Tracer
from core.cluster.mirrors import ClusterBus
from core.cluster.node import Node
from core.cluster.view import ClusterView
from core.config import CoreSettings
from core.economics import TIERS_BY_PRIORITY
from core.identity.ratelimit import Limiter, RateLimiter, TokenBuckets
from core.jobs.admission import Admission
from core.jobs.board import JobBoard
from core.jobs.dispatch import Dispatcher
from core.jobs.lifecycle import Lifecycle
from core.jobs.model import JobState
from core.jobs.queries import JobQueries
from core.jobs.queue import JobQueue, LocalQueues
from core.jobs.reaper import Reaper
from core.jobs.repository import JobRepository
from core.jobs.settle import Settler
from core.jobs.shared import SharedQueue
from core.jobs.stats import JobsSnapshot, Load
from core.money.billing import Billing
from core.money.ledger import Ledger
from core.store import Store
from core.store.images import ImageBytes
from core.streams.bus import LocalBus, TokenBus
from core.workers.joining import JoinPolicy
from core.workers.registry import WorkerRegistry

log = logging.getLogger("ashao.core.jobs")

LOST_MID_ANSWER = "the core running this job stopped mid-answer; the credits were refunded (send it again)"


class JobSystem:
    """Everything about jobs and the workers that run them."""

    def __init__(
        self,
        *,
        settings: CoreSettings,
        store: Store,
        ledger: Ledger,
        images: ImageBytes,
        node: Node | None = None,
        send_limiter: Limiter | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        """``node``: this core's place among several (the shared queue, job locations); None for the
        embedded single core. ``tracer``: while tracing is on, each admitted job carries its spans."""
        self.settings = settings
        self.store = store
        self.node = node
        queue: JobQueue = node.queue if node is not None else LocalQueues()
        bus: TokenBus = (
            ClusterBus(finished_tokens_kept=settings.finished_tokens_kept, remote=node.remote)
            if node is not None
            else LocalBus(finished_tokens_kept=settings.finished_tokens_kept)
        )
        self.registry = WorkerRegistry(
            store,
            joining=JoinPolicy(store=store, policy=settings.worker_registration),
            registrations=TokenBuckets(
                rate=settings.register_rate_per_ip, burst=settings.register_burst_per_ip
            ),
            probation_slots=settings.worker_probation_slots,
            shared=node is not None,
        )
        self.board = JobBoard(queue=queue, bus=bus, registry=self.registry)
        self.board.tracer = tracer
        self.repo = JobRepository(store)
        billing = Billing(ledger)
        self.settler = Settler(store=store, billing=billing, board=self.board)
        self.lifecycle = Lifecycle(
            board=self.board,
            settler=self.settler,
            billing=billing,
            images=images,
            settings=settings,
            core_id=node.id if node is not None else "",
        )
        self.dispatcher = Dispatcher(board=self.board, lifecycle=self.lifecycle, settings=settings)
        self.admission = Admission(
            store=store,
            board=self.board,
            repo=self.repo,
            billing=billing,
            settings=settings,
            wake=self.dispatcher.pump,
            limiter=send_limiter
            if send_limiter is not None
            else RateLimiter(
                per_principal=(settings.send_rate_per_ip, settings.send_burst_per_ip),
                per_ip=(settings.send_rate_per_ip, settings.send_burst_per_ip),
            ),
        )
        self.queries = JobQueries(board=self.board, repo=self.repo, ledger=ledger)
        self.reaper = Reaper(
            board=self.board, dispatcher=self.dispatcher, lifecycle=self.lifecycle, settings=settings
        )
        self.shared: SharedQueue | None = None
        self.cluster = ClusterView()
        self._beats = 0
        self._control: set[asyncio.Task[None]] = set()
        if node is not None:
            self.shared = SharedQueue(
                node=node,
                store=store,
                board=self.board,
                repo=self.repo,
                lifecycle=self.lifecycle,
                settler=self.settler,
                settings=settings,
            )
            self.dispatcher.on_room = node.queue.wake
            self.admission.on_repeat = self.shared.queue_unqueued
            self.lifecycle.elsewhere = self._cancel_elsewhere
            node.on_cancel = self.shared.cancel
            node.on_revoke = self._let_go

    def loops(self) -> dict[str, Loop]:
        """The background loops of the job system (run them under the process's supervisor)."""
        loops: dict[str, Loop] = {"reaper": every(Reaper.INTERVAL_S, self.reaper.tick)}
        if self.node is not None and self.shared is not None:
            queue, shared = self.node.queue, self.shared
            loops.update(
                {
                    "pull": lambda: queue.pull(shared.wanted, shared.adopt),
                    "renew": every(queue.ack_wait_s / 3, queue.renew),
                    "release": every(1.0, shared.release_idle),
                    "sweep": every(5.0, shared.sweep),
                    "follow-up": every(1.0, shared.follow_up),
                    "heartbeat": every(2.0, self._heartbeat),
                }
            )
        return loops

    async def _heartbeat(self) -> None:
        """Report this core's figures, and read the cluster's (the store's count of done jobs now and
        then: it is a scan)."""
        assert self.node is not None
        own = self.board.snapshot(recent_s=self.settings.lease_timeout_s)
        served = [t for t in TIERS_BY_PRIORITY if self.board.serving(t)]
        await self.node.heartbeat(ClusterView.report(own, served, self.node.id))
        view = self.cluster
        view.take(await self.node.others_reports())
        view.waiting_in_queue = await self.node.queue.waiting()
        self._beats += 1
        if view.jobs_completed is None or self._beats % 5 == 0:
            own_then = self.board.jobs_completed
            view.counted(await self.repo.completed_count(), own_then)

    def _cancel_elsewhere(self, job_id: str, reason: str) -> None:
        if self.node is not None:
            task = asyncio.create_task(self._cancel_remote(job_id, reason))
            self._control.add(task)
            task.add_done_callback(self._control.discard)

    async def _cancel_remote(self, job_id: str, reason: str) -> None:
        """Cancel a job this core does not hold: the core that holds it does; one no core holds yet (still
        on the shared queue) ends here."""
        assert self.node is not None and self.shared is not None
        try:
            await self.node.cancel(job_id, reason)
            await self.shared.cancel_unheld(job_id, reason)
        except Exception:
            log.exception("could not cancel job %s", job_id)

    def _let_go(self, worker_id: str) -> None:
        """Another core revoked ``worker_id``: forget it here and close its stream, if it has one."""
        info = self.registry.forget(worker_id)
        if info is not None and info.connection is not None:
            conn = info.connection
            self.dispatcher.detach(conn, reason="revoked by the operator")
            conn.link.close("revoked by the operator")

    async def start(self) -> None:
        """Load workers, then take back every unfinished job the store holds (one core: they are all
        this core's): queued and assigned ones run again; one that had started answering ends with an
        error and is refunded (its tokens were in memory; starting over would splice two answers)."""
        await self.registry.load()
        self.board.jobs_completed = await self.repo.completed_count()
        if self.node is not None:
            return  # among several cores, jobs come from the shared queue (a stopped core's, too)
        ids = await self.repo.unfinished()
        requeued = []
        for job_id in ids:
            loaded = await self.repo.load(job_id, self.settings.max_history_messages)
            if loaded is None:
                continue
            job, state = loaded
            self.board.add(job)
            if state == JobState.STREAMING:
                self.board.unqueue(job)
                self.lifecycle.finish_failed(job, LOST_MID_ANSWER, "RESTARTED")
            elif state != JobState.QUEUED:
                requeued.append(JobRepository.requeued(job_id))
        if requeued:
            await self.store.write(requeued)
        if ids:
            log.info("recovered %d unfinished jobs from the store", len(ids))
        self.dispatcher.pump()

    def snapshot(self) -> JobsSnapshot:
        """Every live figure (of the whole cluster, among several cores: a few seconds old for others)."""
        own = self.board.snapshot(recent_s=self.settings.lease_timeout_s)
        return own if self.node is None else self.cluster.merged(own)

    def load(self) -> Load:
        """Where the work is now, per tier (what ``ashao status`` shows)."""
        return self.board.load()

    def serving(self, tier: str) -> bool:
        """Whether a connected worker serves ``tier`` now."""
        return self.board.serving(tier) or (self.node is not None and tier in self.cluster.served)

    def unserved(self, tier: str) -> bool:
        """Whether no worker can take a job of ``tier`` now, as far as this core knows: no connected
        worker serves the tier — here, or (among several cores) at any core as they last reported it
        (until this core has read their reports once, it assumes one may)."""
        if self.node is None:
            return not self.board.serving(tier)
        return self.cluster.read and not self.serving(tier)

    async def revoke_worker(self, worker_id: str) -> None:
        """Revoke a worker (durably), close its stream, and give its jobs to others (every core is told)."""
        info = await self.registry.revoke(worker_id)
        if self.node is not None:
            await self.node.revoke_worker(worker_id)
        if info is None:
            return  # known to another core only: that core lets it go

        conn = info.connection
        if conn is not None:
            self.dispatcher.detach(conn, reason="revoked by the operator")
            conn.link.close("revoked by the operator")
        for job_id in list(info.pulled):
            job = self.board.get(job_id)
            if job is not None and job.state.running:
                self.lifecycle.take_back(job, info, "the worker was revoked", "WORKER_REVOKED")
        self.dispatcher.pump()

    def stop_admitting(self) -> None:
        """Refuse new sends from now on (shutdown's first step)."""
        self.board.closing = True

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for pending writes."""
        started = time.monotonic()
        await self.settler.drain(timeout_s)
        log.debug("drained job writes in %.3f s", time.monotonic() - started)
