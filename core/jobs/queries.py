"""Reading jobs and conversations, for their owners only (anyone else gets NOT_FOUND)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import NotFoundError, UnavailableError
from core.identity.principal import Principal
from core.ids import is_id
from core.jobs.board import JobBoard
from core.jobs.model import JobSnapshot, JobState
from core.jobs.repository import JobRepository
from core.money.ledger import Ledger, worker_account
from core.streams.log import JobLog, Terminal
from core.workers.registry import WorkerInfo


@dataclass(frozen=True, slots=True)
class WorkerAccount:
    """A worker's earnings and stats."""

    earnings: int
    jobs_completed: int
    tokens_generated: int


class JobQueries:
    """Jobs, their event logs, conversations and worker accounts."""

    def __init__(self, *, board: JobBoard, repo: JobRepository, ledger: Ledger) -> None:
        self._board = board
        self._repo = repo
        self._ledger = ledger

    async def open_log(self, job_id: str, principal: Principal) -> tuple[JobLog, str]:
        """The event log of a job, live or finished, and its state. NOT_FOUND for unknown ids and
        other users' jobs."""
        job = self._board.get(job_id)
        if job is not None:
            if principal.may_see(job.owner):
                return job.log, job.state.value
        elif (ended := self._board.bus.find(job_id)) is not None and ended.owner:
            # It ended here moments ago and its end is durable: the store would say what the log says.
            if principal.may_see(ended.owner):
                return ended, ended.state
        elif is_id(job_id, "job"):
            stored = await self._repo.outcome(job_id)
            job = self._board.get(job_id)  # it may have gone live again while we read
            if job is not None:
                if principal.may_see(job.owner):
                    return job.log, job.state.value
            elif stored is not None and principal.may_see(stored.owner):
                state, tokens, error = stored.state, stored.tokens, stored.error
                cached = self._board.bus.find(job_id)
                if cached is not None and cached.terminal is not None:
                    return cached, state.value  # (it may have ended here before the store says so)
                if not state.terminal:
                    # Another core runs it (or will): follow it there.
                    mirror = self._board.bus.follow(job_id, stored.core_id)
                    if mirror is None:
                        raise UnavailableError("job is being recovered; retry shortly")
                    return mirror, state.value

                if state == JobState.DONE:
                    terminal = Terminal("done", tokens=len(tokens))
                else:
                    terminal = Terminal(
                        "error", message=error or f"job {state.value}", reason=state.value.upper()
                    )
                finished = JobLog(job_id, tokens, terminal, answer=stored.answer)
                finished.owner, finished.state = stored.owner, state.value

                self._board.bus.remember(finished)
                return finished, state.value
        raise NotFoundError(f"jobId: no job {job_id!r}", field="jobId")

    async def get_job(self, job_id: str, principal: Principal) -> JobSnapshot:
        """One job's state."""
        job = self._board.get(job_id)
        if job is not None and principal.may_see(job.owner):
            return job.snapshot()
        if job is None and is_id(job_id, "job"):
            stored = await self._repo.snapshot(job_id)
            if stored is not None and principal.may_see(stored[0]):
                return stored[1]
        raise NotFoundError(f"jobId: no job {job_id!r}", field="jobId")

    async def get_conversation(self, conversation_id: str, principal: Principal) -> list[tuple[str, str]]:
        """A conversation's messages, oldest first."""
        owner = (
            await self._repo.conversation_owner(conversation_id) if is_id(conversation_id, "conv") else None
        )
        if owner is None or not principal.may_see(owner):
            raise NotFoundError(
                f"conversationId: no conversation {conversation_id!r}", field="conversationId"
            )
        return await self._repo.messages(conversation_id)

    async def worker_account(self, info: WorkerInfo) -> WorkerAccount:
        """A worker's earnings (from the ledger) and stats (from the store)."""
        jobs, tokens = await self._repo.worker_stats(info.id)
        return WorkerAccount(await self._ledger.balance(worker_account(info.id)), jobs, tokens)
