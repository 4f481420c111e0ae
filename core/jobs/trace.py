"""The spans of one traced job, from its admission to its settlement.

A job's trace hangs under the span of the send that admitted it::

    job                      admission committed → settlement committed (job id, tier, outcome)
    ├── queue wait           queued → handed to a worker (again after each retry)
    ├── dispatch             handed out → the assignment written to the worker's stream; the
    │   └── (worker spans)   worker's own spans continue from it (the assignment carries its context)
    ├── first token          assignment written → the attempt's first token reached the core
    ├── done                 first token → the worker said the answer is complete
    └── settlement           the end's ledger unit submitted → committed (what the caller waits for)

One phase is open at a time; each transition ends it and opens the next, so a job costs a handful of
spans whatever its length (never one per token). Jobs are traced only while tracing is on: otherwise
``Job.trace`` is None and each hook is a single ``is not None`` test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ashao_common.tracing import Attributes, Carrier, Tracer

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class JobTrace:
    """The job's span and its current phase."""

    __slots__ = ("_job", "_phase", "_phase_name", "_tracer")

    def __init__(self, tracer: Tracer, job_id: str, tier: str) -> None:
        """Start the job's span under the span current in this task (the send being admitted)."""
        self._tracer = tracer
        self._job: Span = tracer.start("job", attributes={"ashao.job.id": job_id, "ashao.tier": tier})
        self._phase: Span | None = None
        self._phase_name = ""

    def _enter(self, name: str, kind: str = "internal", attributes: Attributes | None = None) -> None:
        self._end_phase()
        self._phase_name = name
        self._phase = self._tracer.start(
            name, parent=self._tracer.context_of(self._job), kind=kind, attributes=attributes
        )

    def _end_phase(self, error: str = "") -> None:
        if self._phase is not None:
            if error:
                self._tracer.fail(self._phase, error)
            self._phase.end()
            self._phase = None
            self._phase_name = ""

    def queued(self) -> None:
        """The job waits in its queue (first, or again after an attempt was lost)."""
        self._enter("queue wait")

    def assigned(self, worker_id: str, attempt: int) -> None:
        """The job was handed to ``worker_id`` for attempt ``attempt``."""
        self._enter("dispatch", "producer", {"ashao.worker.id": worker_id, "ashao.attempt": attempt})

    def carrier(self) -> Carrier:
        """The context the worker continues (that of the dispatch under way)."""
        return self._tracer.inject(self._phase if self._phase_name == "dispatch" else self._job)

    def pushed(self) -> None:
        """The assignment was written to the worker's stream: now the worker's first token is awaited."""
        if self._phase_name == "dispatch":
            self._enter("first token")

    def first_token(self) -> None:
        """The attempt's first token reached the core: the answer streams until done."""
        self._enter("done")

    def lost(self, reason: str) -> None:
        """The attempt ended without an answer (the job goes back to its queue, or ends)."""
        self._end_phase(reason)

    def completed(self, tokens: int) -> None:
        """The worker said the answer is complete."""
        if self._phase is not None:
            self._phase.set_attribute("ashao.tokens", tokens)
        self._end_phase()

    def settling(self, state: str) -> None:
        """The job's end (``state``) is being written with its money."""
        self._enter("settlement", attributes={"ashao.state": state})

    def settled(self, state: str, attempts: int, tokens: int, error: str) -> None:
        """The end is durable: the job's span ends, failed unless the job is done."""
        self._end_phase()
        job = self._job
        job.set_attribute("ashao.state", state)
        job.set_attribute("ashao.attempts", attempts)
        job.set_attribute("ashao.tokens", tokens)
        if state != "done":
            self._tracer.fail(job, error or state)
        job.end()

    def left(self, reason: str) -> None:
        """The job left this core without ending (handed back to the shared queue)."""
        self._end_phase()
        self._job.set_attribute("ashao.left", reason)
        self._job.end()
