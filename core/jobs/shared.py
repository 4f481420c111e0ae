"""A core among several: taking jobs from the shared queue, and the housekeeping no single core owns.

- ``adopt``: a job pulled from the shared queue is loaded from the store and put on this core's board
  — unless it ended already; while another core that looks live holds it, it is handed back and looked
  at again (delivered again means that core's hold lapsed: it may have died). A job whose core
  stopped before any token reached its callers runs again here; one whose core stopped mid-answer
  ends with an error and a refund (its tokens were lost with that core: starting over would splice two
  answers).
- ``wanted``: pull only what this core's connected workers can start now.
- ``sweep``: queued jobs no core took (their publish was lost) are published again; queued jobs past
  their time expire and are refunded (the settlement's key makes a second refund impossible).
- ``queue_unqueued``: a repeated send whose job was stored but never published publishes it now.
- ``follow_up``: mirrors of jobs no core holds yet are pointed at the core that holds them (a location
  message may have been missed) or ended as the store says they ended.
"""

from __future__ import annotations

import logging

from core.cluster.node import Node
from core.cluster.queue import HeldElsewhere
from core.config import CoreSettings
from core.jobs.board import JobBoard
from core.jobs.lifecycle import Lifecycle
from core.jobs.model import JobState
from core.jobs.repository import JobRepository
from core.jobs.settle import Settler
from core.store import Store, StoreError, now_ms
from core.streams.log import Terminal

log = logging.getLogger("ashao.core.jobs")

LOST_MID_ANSWER = "the core running this job stopped mid-answer; the credits were refunded (send it again)"
HELD_ELSEWHERE_RETRY_S = 2.0
"""How soon a job delivered again while another live-looking core holds it is looked at again."""
STRANDED_AFTER_MS = 30_000
"""A queued job no core took for this long is published again (its first publish may have been lost)."""


class SharedQueue:
    """This core's side of the queue several cores share."""

    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        board: JobBoard,
        repo: JobRepository,
        lifecycle: Lifecycle,
        settler: Settler,
        settings: CoreSettings,
    ) -> None:
        self._node = node
        self._store = store
        self._board = board
        self._repo = repo
        self._lifecycle = lifecycle
        self._settler = settler
        self._settings = settings
        self._doubtful: set[str] = set()
        """Begun jobs whose holds may have lapsed, out of the line until the store says whether they are
        still this core's."""

    def wanted(self, tier: str) -> int:
        """Jobs of ``tier`` this core's workers can start now."""
        return sum(c.free for c in self._board.connections.values() if tier in c.tiers)

    async def adopt(self, tier: str, job_id: str) -> bool:
        """Take a pulled job onto this core's board; False if it is not to run here."""
        loaded = await self._repo.load(job_id, self._settings.max_history_messages)
        if loaded is None:
            return False
        job, state = loaded
        if state.terminal or self._board.get(job_id) is not None:
            return False
        if state.running:
            holder = await self._repo.holder(job_id)
            if holder and holder != self._node.id and await self._node.live(holder):
                # Delivered again while its core looks live: that core's hold lapsed, so it may have
                # died within its record's lifetime. Not acknowledged (that would lose the job for
                # good): looked at again until the job ends or its core is no longer live.
                raise HeldElsewhere(HELD_ELSEWHERE_RETRY_S)
        if (waited := self._node.remote.claim(job_id)) is not None:
            job.log = waited  # readers here followed it before any core took it: they follow it here
        self._board.adopt(job)
        self._settler.write_behind([JobRepository.held(job_id, self._node.id)])
        await self._node.announce(job_id)
        if state == JobState.STREAMING:
            self._board.unqueue(job)
            self._lifecycle.finish_failed(job, LOST_MID_ANSWER, "CORE_LOST")
        else:
            self._lifecycle.wake()
        return True

    async def release_idle(self) -> None:
        """Hand back jobs pulled here that no local worker started (its worker left), unless their
        answer has begun (they stay, for a worker here that continues them, while this core holds them).

        What another core may have taken over is known from the hold alone: a job whose hold may have
        lapsed (``JetStreamQueue.take_lapsed``) left the line; a queued one is handed back, a begun one
        waits outside the line until the store says whether it is still this core's. A job whose hold is
        fresh cannot have been delivered elsewhere, so it is not looked up."""
        queue = self._node.queue
        for job_id in queue.take_lapsed():
            job = self._board.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                continue
            if job.log.tokens:
                self._doubtful.add(job_id)
            elif queue.release(job_id, lapsed=True):
                self._board.forget(job)  # (delivered again, to whichever core, it is read from the store)
        await self._settle_doubts()
        # (before its hold could lapse: a job another core may take must not also wait here)
        for job_id in queue.idle(older_than_s=min(self._settings.release_after_s, queue.ack_wait_s / 2)):
            job = self._board.get(job_id)
            if job is None or job.state != JobState.QUEUED or job.log.tokens or self.wanted(job.tier) > 0:
                continue
            if queue.release(job_id):
                self._board.forget(job)

    async def _settle_doubts(self) -> None:
        """Begun jobs out of the line because their holds may have lapsed: back in the line once the store
        says they are still this core's, handed back if not (ended, or taken over by another core); they
        wait while the store cannot say."""
        for job_id in list(self._doubtful):
            job = self._board.get(job_id)
            if job is None or job.state != JobState.QUEUED:
                self._doubtful.discard(job_id)
                continue
            held = await self._still_held_here(job_id)
            if held is None:
                continue
            self._doubtful.discard(job_id)
            queue = self._node.queue
            if held:
                queue.line(job.tier, job.owner, job_id)
                self._lifecycle.wake()
            elif queue.release(job_id, lapsed=True):
                self._board.forget(job)

    async def _still_held_here(self, job_id: str) -> bool | None:
        """Whether the store still has ``job_id`` unended and held by this core (or by none); None when
        the store cannot say."""
        try:
            standing = await self._repo.standing(job_id)
        except StoreError:
            return None
        if standing is None:
            return False
        _, state, core_id = standing
        return not state.terminal and core_id in ("", self._node.id)

    async def queue_unqueued(self, job_id: str) -> None:
        """A send was repeated: if its job waits with no core holding it, publish it again now rather than
        at the sweep (a store that failed to answer may have committed a send this core then refused, and
        never published; a publish repeated within the queue's window is not a second job)."""
        standing = await self._repo.standing(job_id)
        if standing is not None and standing[1] == JobState.QUEUED and not standing[2]:
            self._node.queue.publish(standing[0], job_id)

    async def sweep(self) -> None:
        """Publish stranded queued jobs again; expire queued jobs past their time."""
        now = now_ms()
        stranded = await self._repo.stranded(now - STRANDED_AFTER_MS)
        for job_id, tier in stranded:
            self._node.queue.publish(tier, job_id)
        if stranded:
            await self._store.write([JobRepository.touched(j, now) for j, _ in stranded])
        expired = await self._repo.queued_before(now - int(self._settings.queue_timeout_s * 1000))
        for job_id in expired:
            if self._board.get(job_id) is not None:
                continue  # held here: the reaper expires it
            loaded = await self._repo.load(job_id, 1)
            if loaded is None or loaded[1] != JobState.QUEUED:
                continue
            job = loaded[0]
            self._board.adopt(job)
            self._board.unqueue(job)
            self._lifecycle.finish_failed(job, "no worker took the job in time", "EXPIRED", JobState.EXPIRED)

    async def follow_up(self) -> None:
        """Mirrors waiting for a location: point them at their core, or end them as the store says."""
        remote = self._node.remote
        waiting = remote.waiting()
        for job_id, core_id, state in await self._repo.locations(waiting):
            if state.terminal:
                stored = await self._repo.outcome(job_id)
                if stored is not None:
                    terminal = _terminal(stored.state, len(stored.tokens), stored.error)
                    remote.ended(job_id, terminal, stored.tokens, stored.answer)
            elif core_id and core_id != self._node.id and await self._node.live(core_id):
                remote.located(job_id, core_id)

    async def cancel_unheld(self, job_id: str, reason: str) -> None:
        """End a job still waiting on the shared queue (no live core holds it) as cancelled, here; a
        core pulling it later finds it ended (the settlement's key refuses a second refund)."""
        loaded = await self._repo.load(job_id, 1)
        if loaded is None or loaded[1] != JobState.QUEUED or self._board.get(job_id) is not None:
            return
        holder = await self._repo.holder(job_id)
        if holder and await self._node.live(holder):
            return  # that core got the cancellation
        job = loaded[0]
        self._board.adopt(job)
        self._board.unqueue(job)
        self._lifecycle.finish_failed(job, reason, "CANCELLED", JobState.CANCELLED)

    def cancel(self, job_id: str, reason: str) -> None:
        """A cancellation asked by another core: done here if this core holds the job."""
        if self._board.get(job_id) is not None:
            self._lifecycle.cancel(job_id, reason)


def _terminal(state: JobState, tokens: int, error: str) -> Terminal:
    if state == JobState.DONE:
        return Terminal("done", tokens=tokens)
    return Terminal("error", message=error or f"job {state.value}", reason=state.value.upper())
