"""One worker's Connect stream as a ``WorkerLink``: a bounded outbox between dispatch (which assigns
and cancels from anywhere) and the stream's single writer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ashao.v1 import worker_pb2
from core.errors import AshaoError
from core.jobs.model import Job


class StreamLink:
    """The outbox, the end, and the side work of one Connect stream."""

    def __init__(self, *, limit: int, lookup: Callable[[str], Job | None]) -> None:
        self.outbox: asyncio.Queue[worker_pb2.ConnectResponse] = asyncio.Queue(maxsize=limit)
        self.closed = asyncio.Event()
        self.reason = "stream closed"
        self.dropped = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._lookup = lookup

    # -- WorkerLink -----------------------------------------------------------------------------

    def assign(self, job_id: str) -> None:
        """Queue the assignment of ``job_id`` (built now, from the job as it stands)."""
        job = self._lookup(job_id)
        if job is not None:
            self._put(worker_pb2.ConnectResponse(assignment=job.to_assignment()), essential=True)

    def cancel(self, job_id: str, reason: str) -> None:
        """Queue a cancellation."""
        msg = worker_pb2.ConnectResponse(cancel=worker_pb2.CancelJob(job_id=job_id, reason=reason))
        self._put(msg, essential=True)

    def close(self, reason: str) -> None:
        """End the stream (the core gave up on it, or it was replaced)."""
        if not self.closed.is_set():
            self.reason = reason
            self.closed.set()

    # -- the stream's own use -----------------------------------------------------------------

    def written(self, msg: worker_pb2.ConnectResponse) -> None:
        """``msg`` went down the stream: an assignment's dispatch is over (its trace says so)."""
        if msg.HasField("assignment"):
            job = self._lookup(msg.assignment.job_id)
            if job is not None and job.trace is not None:
                job.trace.pushed()

    def reject(self, job_id: str, err: AshaoError) -> None:
        """Tell the worker one of its messages about ``job_id`` was refused (dropped if it is not
        reading: refusals are advisory)."""
        msg = worker_pb2.ConnectResponse(
            rejected=worker_pb2.JobRejected(job_id=job_id, code=err.code.name, message=err.message)
        )
        self._put(msg, essential=False)

    def _put(self, msg: worker_pb2.ConnectResponse, *, essential: bool) -> None:
        """A worker that lets essential messages pile up is not reading: it is let go; refusals
        beyond the bound are dropped (and counted)."""
        try:
            self.outbox.put_nowait(msg)
        except asyncio.QueueFull:
            if essential:
                self.close("the worker is not reading its stream")
            else:
                self.dropped += 1

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` alongside the stream, cancelled when the stream ends."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
