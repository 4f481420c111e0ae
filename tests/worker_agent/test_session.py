"""One stream's session on a ``FakeClock``: heartbeats and the drain timeout, counted on that clock.

The call is scripted (as the batcher's tests script its writer): what the test queues is what the
core says, and everything the session writes is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ashao.v1 import worker_pb2
from tests.helpers.agents import agent_settings
from tests.helpers.wait import eventually
from tests.worker_agent.fakeclock import FakeClock
from worker_agent.backends import ChatRequest, Emit
from worker_agent.session import Session, SessionEnd

pytestmark = pytest.mark.timeout(10)

BEAT = 2.0
"""The heartbeat interval the Welcome asks for (s)."""


class ScriptedCall:
    """The core's end of a welcomed Connect call."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[worker_pb2.ConnectResponse | None] = asyncio.Queue()
        """What the core says next; None ends the call."""
        self.written: list[worker_pb2.ConnectRequest] = []
        self.half_closed = False

    async def read(self) -> object:
        msg = await self.inbox.get()
        return grpc.aio.EOF if msg is None else msg

    async def write(self, request: worker_pb2.ConnectRequest) -> None:
        self.written.append(request)

    async def done_writing(self) -> None:
        self.half_closed = True
        self.inbox.put_nowait(None)  # the core ends the call once it has read the half-close

    def assign(self, job_id: str) -> None:
        self.inbox.put_nowait(
            worker_pb2.ConnectResponse(assignment=worker_pb2.Assignment(job_id=job_id, max_tokens=100))
        )

    def heartbeats(self) -> list[worker_pb2.WorkerHeartbeat]:
        return [m.heartbeat for m in self.written if m.HasField("heartbeat")]

    def of_kind(self, kind: str) -> list[worker_pb2.ConnectRequest]:
        return [m for m in self.written if m.WhichOneof("msg") == kind]


class HeldBackend:
    """Emits what the test hands it, and finishes when the test says so."""

    continues_prefix = False

    def __init__(self) -> None:
        self.emits: dict[str, Emit] = {}
        self.finished: dict[str, asyncio.Event] = {}

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        done = self.finished.setdefault(request.job_id, asyncio.Event())
        self.emits[request.job_id] = emit
        await done.wait()
        return "stop"

    def emit(self, job_id: str, tokens: Sequence[str]) -> None:
        self.emits[job_id](tokens)

    def finish(self, job_id: str) -> None:
        self.finished.setdefault(job_id, asyncio.Event()).set()

    async def aclose(self) -> None:
        pass


@dataclass
class Stream:
    session: Session
    call: ScriptedCall
    backend: HeldBackend
    clock: FakeClock
    stopping: asyncio.Event
    task: asyncio.Task[SessionEnd]


@pytest.fixture
async def stream(tmp_path: Path) -> AsyncIterator[Stream]:
    clock = FakeClock()
    call = ScriptedCall()
    backend = HeldBackend()
    stopping = asyncio.Event()
    session = Session(
        call,
        worker_pb2.Welcome(worker_id="wrk_t", heartbeat_interval_ms=int(BEAT * 1000), flush_interval_ms=10),
        settings=agent_settings(tmp_path, "127.0.0.1:1", slots=2, drain_timeout_s=30),
        backend=backend,
        image_backend=None,
        stopping=stopping,
        clock=clock,
    )
    task = asyncio.create_task(session.run())
    try:
        yield Stream(session, call, backend, clock, stopping, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def beat(s: Stream, n: int) -> worker_pb2.WorkerHeartbeat:
    """Move the clock on one heartbeat interval; the heartbeat written then (the ``n``-th)."""
    await s.clock.turn(BEAT)  # the heartbeat is the only task sleeping on the clock
    await eventually(lambda: len(s.call.heartbeats()) == n)
    return s.call.heartbeats()[-1]


async def test_heartbeats_report_the_tokens_per_second_of_the_last_interval(stream: Stream) -> None:
    s = stream
    s.call.assign("job_a")
    s.call.assign("job_b")
    await eventually(lambda: len(s.backend.emits) == 2)
    s.backend.emit("job_a", ["a"] * 50)
    s.backend.emit("job_b", ["b"] * 30)
    hb = await beat(s, 1)
    assert (hb.tokens_per_sec, hb.running) == (80 / BEAT, 2)
    s.backend.emit("job_a", ["a"] * 10)
    s.backend.finish("job_b")
    await eventually(lambda: s.session.jobs.keys() == {"job_a"})
    hb = await beat(s, 2)
    assert (hb.tokens_per_sec, hb.running) == (10 / BEAT, 1)
    s.backend.finish("job_a")
    await eventually(lambda: not s.session.jobs)
    hb = await beat(s, 3)
    assert (hb.tokens_per_sec, hb.running) == (0.0, 0)
    assert s.session.heartbeats_sent == 3


async def test_an_idle_stream_heartbeats_every_interval_and_nothing_else(stream: Stream) -> None:
    s = stream
    for n in range(1, 11):
        hb = await beat(s, n)
        assert (hb.tokens_per_sec, hb.running) == (0.0, 0)
    assert [m.WhichOneof("msg") for m in s.call.written] == ["heartbeat"] * 10  # and nothing else
    assert s.session.heartbeats_sent == 10 and not s.task.done()
    assert s.clock.sleeps == [BEAT] * 11  # one sleep per interval (the eleventh is under way)


async def test_a_drain_hands_back_what_is_unfinished_when_its_timeout_passes_on_the_clock(
    stream: Stream,
) -> None:
    s = stream
    s.call.assign("job_a")
    await eventually(lambda: "job_a" in s.backend.emits)
    s.backend.emit("job_a", ["a"] * 3)
    s.stopping.set()
    await eventually(lambda: bool(s.call.of_kind("drain")))
    s.call.assign("job_b")  # too late: refused at once, the core gives it to another worker
    await eventually(lambda: bool(s.call.of_kind("failed")))
    assert [m.failed.job_id for m in s.call.of_kind("failed")] == ["job_b"]
    # job_a runs on while the drain timeout (30 s on the clock, a sleep beside the heartbeat's) runs
    await eventually(lambda: s.clock.sleeping == 2)
    s.clock.advance(29.0)
    s.backend.emit("job_a", ["a"] * 2)
    await eventually(lambda: s.session.batcher.tokens_sent == 5)
    assert not s.task.done() and "job_a" in s.session.jobs
    s.clock.advance(1.0)
    assert await asyncio.wait_for(s.task, 5) is SessionEnd.DRAINED
    failed = [m.failed for m in s.call.of_kind("failed")]
    assert [(f.job_id, f.retryable) for f in failed] == [("job_b", True), ("job_a", True)]
    assert s.call.half_closed
