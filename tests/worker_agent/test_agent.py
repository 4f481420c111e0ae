"""The agent against a real core (grpc.aio on loopback, SQLite in tmp_path), run as a task of the test.

Where timing is what a test is about, the agent or its synthetic backend keeps time by a
``FakeClock`` that the test moves, and the test counts what happened on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from ashao.v1 import image_pb2, image_pb2_grpc, network_pb2
from core.jobs.model import JobState
from core.workers.registry import WorkerInfo
from tests.helpers.agents import account, agent_settings, running
from tests.helpers.core import Core, collect, core_settings, start_core, stop_core
from tests.helpers.images import ImageServer, png
from tests.helpers.net import free_port
from tests.helpers.upstream import FakeUpstream
from tests.helpers.wait import eventually
from tests.worker_agent.fakeclock import FakeClock
from worker_agent import AgentError
from worker_agent.agent import Agent
from worker_agent.backends import ChatBackend, ChatRequest, Emit
from worker_agent.backends.images import OpenAIImagesBackend
from worker_agent.backends.openai import OpenAIBackend
from worker_agent.backends.synthetic import SyntheticBackend
from worker_agent.config import AgentSettings
from worker_agent.identity import credentials_path

pytestmark = pytest.mark.timeout(60)


def backend_url(up: FakeUpstream) -> str:
    return f"http://127.0.0.1:{up.port}/v1"


def image_settings(tmp_path: Path, core: Core, srv: ImageServer, **overrides: Any) -> AgentSettings:
    """An image-only agent of ``srv``."""
    upstream = f"http://127.0.0.1:{srv.port}/v1"
    base = {"backend": None, "image_backend": "openai", "image_upstream": upstream, "image_model": "sdxl"}
    return agent_settings(tmp_path, core.app.address, **{**base, **overrides})


def tokens_of(events: list[tuple[int, str, object]]) -> list[object]:
    return [p for _, kind, p in events if kind == "token"]


def worker(core: Core, agent: Agent) -> WorkerInfo:
    """The core's record of the agent's worker."""
    assert agent.credentials is not None
    info = core.app.jobs.board.registry.get(agent.credentials.worker_id)
    assert info is not None
    return info


class Counting:
    """A chat backend that counts the tokens its inner backend emits."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.continues_prefix = inner.continues_prefix
        self.emitted = 0

    async def generate(self, request: ChatRequest, emit: Emit) -> str:
        def counted(tokens: Sequence[str]) -> None:
            self.emitted += len(tokens)
            emit(tokens)

        return await self.inner.generate(request, counted)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def pace(clock: FakeClock, backend: SyntheticBackend, tick: float, *, sleepers: int = 1) -> None:
    """Move ``clock`` on a pacing tick at a time, each once the pacer has done the one before, while
    ``backend`` paces an answer. ``sleepers``: the pacer and whatever else sleeps on the clock."""
    while True:
        await eventually(lambda: clock.sleeping == sleepers or not backend.pacing.running)
        if not backend.pacing.running:
            return
        clock.advance(tick)


async def test_registers_persists_credentials_0600_and_reuses_them(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address)
    path = credentials_path(s.data_dir, s.name)
    async with running(s) as (agent, _):
        assert agent.registrations == 1 and agent.credentials is not None
        first = agent.credentials
        doc = orjson.loads(path.read_bytes())
        assert doc == {"workerId": first.worker_id, "workerToken": first.worker_token}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        acct = await account(core, agent)
        assert acct.connected and acct.worker_id == first.worker_id and acct.name == "gpu-test"
    assert list(path.parent.glob(".*.tmp")) == []  # nothing left over from the atomic write
    async with running(s) as (agent, _):
        assert agent.registrations == 0 and agent.credentials == first


async def test_pushed_job_arrives_in_two_token_batches(tmp_path: Path, patient_core: Core) -> None:
    core = patient_core
    s = agent_settings(tmp_path, core.app.address, synthetic_tokens=200)
    async with running(s, clock=FakeClock()) as (agent, _):  # the agent's clock stands still
        job_id, _ = await core.send("count")
        events = await collect(core, job_id)
        assert tokens_of(events) == [f"tok{i} " for i in range(200)]
        assert events[-1] == (201, "done", 200)
        # The first burst went out at once (time to first token); the rest was held for a flush
        # interval that never passed on the agent's clock, and went out with the completion.
        assert agent.batches_sent == 2 and agent.tokens_sent == 200


async def test_runs_jobs_at_once_up_to_its_slots(tmp_path: Path, core: Core) -> None:
    clock = FakeClock()  # the answers move only when the test moves this clock
    backend = SyntheticBackend(tokens=12, tokens_per_sec=40, clock=clock)
    s = agent_settings(tmp_path, core.app.address, slots=3)
    async with running(s, backend) as (agent, _):
        jobs = [(await core.send(f"m{i}"))[0] for i in range(5)]
        results = asyncio.gather(*(collect(core, j) for j in jobs))

        def holding(running: int, started: int) -> bool:
            """``running`` answers are under way (paced, the pacer waiting for the clock)."""
            assert agent.running <= 3
            return (
                agent.running == backend.pacing.active == running
                and agent.jobs_started == started
                and clock.sleeping == 1
            )

        await eventually(lambda: holding(3, 3))  # three at once; two wait for a slot
        clock.advance(1.0)  # every running answer is due in full
        await eventually(lambda: holding(2, 5))
        clock.advance(1.0)
        for events in await results:
            assert tokens_of(events) == [f"tok{i} " for i in range(12)]
    await backend.aclose()


async def test_tokens_of_many_paced_jobs_share_batches(tmp_path: Path, patient_core: Core) -> None:
    core, jobs, tick = patient_core, 20, 1 / 256
    clock = FakeClock()  # the agent's (flushes, heartbeats) and the backend's (pacing)
    backend = SyntheticBackend(tokens=60, tokens_per_sec=256, tick_s=tick, clock=clock)
    s = agent_settings(tmp_path, core.app.address, slots=jobs)
    async with running(s, backend, clock=clock) as (agent, _):
        job_ids = [(await core.send(f"m{i}"))[0] for i in range(jobs)]
        results = asyncio.gather(*(collect(core, j) for j in job_ids))
        await eventually(lambda: backend.pacing.active == jobs)  # every answer started, at t0
        t0 = clock.time()
        await pace(clock, backend, tick, sleepers=2)  # the heartbeat sleeps on the clock too
        for events in await results:
            assert tokens_of(events) == [f"tok{i} " for i in range(60)]
        assert clock.time() - t0 == 59 * tick  # one token a tick for each job
        intervals = (clock.time() - t0) / (core.app.settings.flush_interval_ms / 1000)
    await backend.aclose()
    # 1,200 tokens: each job's first token at once, then at most one batch per flush interval on the
    # agent's clock (the last one carrying every completion)
    assert agent.tokens_sent == jobs * 60
    assert agent.batches_sent <= jobs + intervals + 1, (agent.batches_sent, intervals)


async def test_cancel_stops_the_job(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address)
    clock, tick = FakeClock(), 1 / 64
    synthetic = SyntheticBackend(tokens=10_000, tokens_per_sec=64, tick_s=tick, clock=clock)
    backend = Counting(synthetic)
    async with running(s, backend) as (agent, _):
        job_id, _ = await core.send("long")
        for _ in range(3):
            await clock.turn(tick)  # once the pacer waits: the first token went at once
        await eventually(lambda: agent.tokens_sent >= 3)
        core.app.jobs.lifecycle.cancel(job_id, "cancelled by its owner")
        await eventually(lambda: agent.running == 0 and synthetic.pacing.active == 0)
        events = await collect(core, job_id)
        assert events[-1][1:] == ("error", "CANCELLED")
        emitted, sent = backend.emitted, agent.tokens_sent
        clock.advance(1.0)  # a second in which 64 more tokens were due
        await eventually(lambda: not synthetic.pacing.running)  # it woke, found nothing to pace, stopped
        assert backend.emitted == emitted and agent.tokens_sent == sent and agent.connected
    await backend.aclose()


async def test_cancel_stops_the_upstream_request(tmp_path: Path, core: Core) -> None:
    # An upstream that takes an hour between words: the job is cancelled in the middle of its answer.
    async with FakeUpstream([f"w{i} " for i in range(200)], delay_s=3600).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}/v1", model="m")
        s = agent_settings(tmp_path, core.app.address, backend="openai", upstream=backend_url(up), model="m")
        async with running(s, backend) as (agent, _):
            job_id, _ = await core.send("long")
            await eventually(lambda: agent.tokens_sent == 1)
            core.app.jobs.lifecycle.cancel(job_id, "cancelled by its owner")
            await eventually(lambda: agent.running == 0)
            await eventually(lambda: up.abandoned == 1)  # the model server saw the request go away
            assert len(up.requests) == 1
        await backend.aclose()


async def test_openai_backend_job_end_to_end(tmp_path: Path, core: Core) -> None:
    async with FakeUpstream(["Hello", ",", " world"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="tiny")
        s = agent_settings(
            tmp_path, core.app.address, backend="openai", upstream=backend_url(up), model="tiny"
        )
        async with running(s, backend):
            job_id, _ = await core.send("Say hello.", tier="free")
            events = await collect(core, job_id)
            assert tokens_of(events) == ["Hello", ",", " world"] and events[-1][1:] == ("done", 3)
        await backend.aclose()
        assert up.requests[0]["messages"] == [{"role": "user", "content": "Say hello."}]


async def test_failing_upstream_fails_the_job_not_the_stream(tmp_path: Path, core: Core) -> None:
    async with FakeUpstream(["a", "b", "c", "d"], mode="cut").running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        s = agent_settings(tmp_path, core.app.address, backend="openai", upstream=backend_url(up), model="m")
        async with running(s, backend) as (agent, _):
            job_id, _ = await core.send("x")
            events = await collect(core, job_id)
            # Part of the answer was delivered and this backend cannot continue it: the job ends with
            # an error (refunded) rather than starting the answer over; never "done".
            assert events[-1][1:] == ("error", "NO_CONTINUATION")
            assert [t for _, kind, t in events if kind == "token"] == ["a", "b"]
            assert len(up.requests) == 1
            assert agent.connected and agent.connections == 1
        await backend.aclose()


async def test_drain_finishes_running_jobs_then_ends(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address, tokens_per_sec=50, synthetic_tokens=30)
    async with running(s) as (agent, task):
        job_id, _ = await core.send("finish me")
        await eventually(lambda: agent.tokens_sent >= 2)
        agent.drain()
        events = await collect(core, job_id)
        assert events[-1][1:] == ("done", 30)
        await asyncio.wait_for(task, 5)
        assert not agent.aborted
        assert (await account(core, agent)).connected is False


async def test_drain_with_nothing_running_exits_without_waiting_for_a_timeout(
    tmp_path: Path, patient_core: Core
) -> None:
    # Its drain timeout would pass only if the test moved the agent's clock, and the grace for the
    # core to close the stream is an hour: the agent ends once the core has closed the stream.
    s = agent_settings(tmp_path, patient_core.app.address, drain_timeout_s=1, shutdown_grace_s=3600)
    async with running(s, clock=FakeClock()) as (agent, task):
        agent.drain()
        await asyncio.wait_for(task, 10)
        assert not agent.aborted and not agent.connected


async def test_drain_timeout_hands_jobs_back_and_another_worker_continues(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address, drain_timeout_s=0.3)
    clock, tick = FakeClock(), 1 / 64  # the answer cannot end unless the test moves this clock
    backend = SyntheticBackend(tokens=40, tokens_per_sec=64, tick_s=tick, clock=clock)
    job_id, _ = await core.send("long")
    async with running(s, backend) as (agent, task):
        for _ in range(3):
            await clock.turn(tick)
        await eventually(lambda: agent.tokens_sent >= 3)
        agent.drain()
        await asyncio.wait_for(task, 5)
    await backend.aclose()
    job = core.app.jobs.board.get(job_id)
    assert job.state == JobState.QUEUED and job.attempts == 1
    done = len(job.log.tokens)
    s2 = agent_settings(tmp_path, core.app.address, name="second", tokens_per_sec=0, synthetic_tokens=40)
    async with running(s2):
        events = await collect(core, job_id)
    # seamless: the second worker continued the numbering where the first stopped
    assert tokens_of(events) == [f"tok{i} " for i in range(40)] and done >= 3
    assert events[-1][1:] == ("done", 40)


async def test_heartbeats_report_throughput_and_keep_the_worker(tmp_path: Path) -> None:
    # The rate each heartbeat carries is counted on a controlled clock in test_session.py; here the
    # core hears the heartbeats, on its own (real) clock.
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=150, worker_registration="open"))
    try:
        s = agent_settings(tmp_path, c.app.address, tokens_per_sec=100, synthetic_tokens=100)
        async with running(s) as (agent, _):
            job_id, _ = await c.send("x")
            await eventually(lambda: worker(c, agent).tokens_per_sec > 0)  # the job's throughput
            events = await collect(c, job_id)
            assert events[-1][1:] == ("done", 100)
            # Idle: heartbeats alone keep the stream, for longer than the core waits for a word from
            # a worker (three intervals), and they report that nothing flows.
            beats = agent.heartbeats_sent
            await eventually(lambda: agent.heartbeats_sent >= beats + 4)
            await eventually(lambda: worker(c, agent).tokens_per_sec == 0.0)
            assert agent.connections == 1 and (await account(c, agent)).connected
    finally:
        await stop_core(c)


async def test_reconnects_after_the_core_restarts(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, worker_registration="open"))
    port = c.app.port
    s = agent_settings(tmp_path, c.app.address)
    async with running(s) as (agent, _):
        await stop_core(c)
        await eventually(lambda: not agent.connected)
        retries = agent.retries
        await eventually(lambda: agent.retries >= retries + 3)  # a few failed attempts while it is down
        c = await start_core(
            core_settings(tmp_path, grpc_addr=f"127.0.0.1:{port}", worker_registration="open")
        )
        try:
            await eventually(lambda: agent.connected)
            assert agent.connections == 2 and agent.registrations == 1  # same identity
            job_id, _ = await c.send("after restart")
            assert (await collect(c, job_id))[-1][1:] == ("done", 16)
        finally:
            await stop_core(c)


async def test_registers_again_when_the_core_forgot_the_token(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path / "one", worker_registration="open"))
    port = c.app.port
    s = agent_settings(tmp_path, c.app.address)
    path = credentials_path(s.data_dir, s.name)
    async with running(s) as (agent, _):
        old = agent.credentials
        assert old is not None
        await stop_core(c)
        await eventually(lambda: not agent.connected)
        c = await start_core(
            core_settings(tmp_path / "two", grpc_addr=f"127.0.0.1:{port}", worker_registration="open")
        )  # empty store
        try:
            await eventually(lambda: agent.connected)
            assert agent.registrations == 2 and agent.credentials != old
            assert orjson.loads(path.read_bytes())["workerId"] == agent.credentials.worker_id
            job_id, _ = await c.send("hi")
            assert (await collect(c, job_id))[-1][1:] == ("done", 16)
        finally:
            await stop_core(c)


async def test_waits_for_an_unreachable_core_then_registers(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, worker_registration="open"))
    port = c.app.port
    await stop_core(c)
    s = agent_settings(tmp_path, f"127.0.0.1:{port}")
    agent = Agent(settings=s, backend=SyntheticBackend())
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.retries >= 3)  # it keeps trying
        assert not task.done() and agent.registrations == 0
        c = await start_core(
            core_settings(tmp_path, grpc_addr=f"127.0.0.1:{port}", worker_registration="open")
        )
        try:
            await eventually(lambda: agent.connected)
            assert agent.registrations == 1
        finally:
            agent.drain()
            await asyncio.wait_for(task, 5)
            await stop_core(c)
    finally:
        agent.abort()
        await asyncio.wait_for(task, 5)


async def test_image_job_through_an_image_backend(tmp_path: Path, core: Core) -> None:
    async with ImageServer().running() as srv:
        images = OpenAIImagesBackend(upstream=f"http://127.0.0.1:{srv.port}/v1", model="sdxl")
        s = image_settings(tmp_path, core, srv)
        async with running(s, image_backend=images) as (agent, _):
            assert agent.tiers == ("image",)
            user = await core.sign_in()
            stub = image_pb2_grpc.ImageServiceStub(core.channel)
            r = await stub.GenerateImage(
                image_pb2.GenerateImageRequest(prompt="aurora", style="Cinematic", aspect="Landscape"),
                metadata=user,
                timeout=10,
            )
            assert r.image.sha256 == hashlib.sha256(png()).hexdigest() and r.image.mime_type == "image/png"
        await images.aclose()
        assert srv.requests[0][1]["size"] == "1344x768"


async def test_failed_image_is_refunded(tmp_path: Path, core: Core) -> None:
    async with ImageServer("garbage").running() as srv:
        images = OpenAIImagesBackend(upstream=f"http://127.0.0.1:{srv.port}", model="sdxl")
        s = image_settings(tmp_path, core, srv)
        async with running(s, image_backend=images):
            user = await core.sign_in()
            stub = image_pb2_grpc.ImageServiceStub(core.channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GenerateImage(
                    image_pb2.GenerateImageRequest(prompt="cat", style="Anime", aspect="Square"),
                    metadata=user,
                    timeout=10,
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        await images.aclose()
        assert len(srv.requests) == 1  # not retryable: no second attempt


@pytest.mark.parametrize("stop", ["drain", "abort"])
async def test_stop_is_immediate_while_the_core_hangs(tmp_path: Path, stop: str) -> None:
    held: list[asyncio.StreamWriter] = []

    def accept(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)  # accepts the connection and never speaks HTTP/2

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # The core's answer is awaited for an hour: stopping must not wait for it.
    agent = Agent(settings=agent_settings(tmp_path, f"127.0.0.1:{port}", call_timeout_s=3600), backend=None)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: bool(held))  # it reached the core and waits for an answer
        assert not task.done() and not agent.connected
        getattr(agent, stop)()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_backoff_doubles_up_to_its_cap(tmp_path: Path) -> None:
    clock = FakeClock()
    s = agent_settings(tmp_path, f"127.0.0.1:{free_port()}", backoff_initial_s=1, backoff_max_s=8)
    agent = Agent(settings=s, backend=SyntheticBackend(), clock=clock)
    task = asyncio.create_task(agent.run())
    try:
        for n in range(1, 8):
            # each attempt fails at once (nothing listens); the pause after it is a sleep on the clock
            await eventually(lambda n=n: len(clock.sleeps) == n and clock.sleeping == 1)
            clock.advance(clock.sleeps[-1])
        caps = [1, 2, 4, 8, 8, 8, 8]
        for pause, cap in zip(clock.sleeps, caps, strict=True):
            assert cap / 2 <= pause <= cap, clock.sleeps  # jitter takes up to half off
        assert agent.retries == 7 and not task.done()
        agent.drain()  # no stream is open: it stops at once, in the middle of a pause
        await asyncio.wait_for(task, 10)
    finally:
        agent.abort()
        await asyncio.wait_for(task, 10)


async def test_a_hello_the_core_refuses_is_fatal(tmp_path: Path, core: Core) -> None:
    async with running(agent_settings(tmp_path, core.app.address)):
        pass  # registered with the chat tiers
    agent = Agent(
        settings=agent_settings(tmp_path, core.app.address, tiers=("gold",)), backend=SyntheticBackend()
    )
    with pytest.raises(AgentError, match="gold"):
        await asyncio.wait_for(agent.run(), 5)


async def network_info(core: Core) -> network_pb2.GetNetworkInfoResponse:
    return await core.network.GetNetworkInfo(network_pb2.GetNetworkInfoRequest(), timeout=5)


async def test_the_agent_announces_the_tiers_the_core_offers_for_its_backends(
    tmp_path: Path, core: Core
) -> None:
    info = await network_info(core)
    chat = tuple(t.name for t in info.tiers if t.kind == network_pb2.TIER_KIND_CHAT)
    image = tuple(t.name for t in info.tiers if t.kind == network_pb2.TIER_KIND_IMAGE)
    assert chat and image
    async with ImageServer().running() as srv:
        images = OpenAIImagesBackend(upstream=f"http://127.0.0.1:{srv.port}/v1", model="sdxl")
        try:
            s = image_settings(tmp_path, core, srv, backend="synthetic")
            async with running(s, image_backend=images) as (agent, _):
                assert agent.tiers == (*chat, *image)
                assert all(core.app.jobs.serving(t) for t in (*chat, *image))
            s = image_settings(tmp_path, core, srv, name="images-only")
            async with running(s, image_backend=images) as (agent, _):
                assert agent.tiers == image
        finally:
            await images.aclose()
    async with running(agent_settings(tmp_path, core.app.address, name="chat-only")) as (agent, _):
        assert agent.tiers == chat


async def test_slots_beyond_the_cores_limit_stop_the_agent_before_it_registers(
    tmp_path: Path, core: Core
) -> None:
    limit = (await network_info(core)).max_worker_slots
    s = agent_settings(tmp_path, core.app.address, slots=limit + 1)
    agent = Agent(settings=s, backend=SyntheticBackend())
    with pytest.raises(
        AgentError, match=rf"--slots {limit + 1} is more than the core allows \(at most {limit} "
    ):
        await asyncio.wait_for(agent.run(), 10)
    assert agent.registrations == 0 and not credentials_path(s.data_dir, s.name).exists()


async def test_tiers_no_backend_of_the_worker_serves_stop_the_agent(tmp_path: Path, core: Core) -> None:
    agent = Agent(
        settings=agent_settings(tmp_path, core.app.address, tiers=("free", "image")),
        backend=SyntheticBackend(),
    )
    with pytest.raises(AgentError, match=r"--tiers names image tiers \(image\) but no --image-backend"):
        await asyncio.wait_for(agent.run(), 10)
    async with ImageServer().running() as srv:
        agent = Agent(settings=image_settings(tmp_path, core, srv, tiers=("pro",)))
        with pytest.raises(AgentError, match=r"--tiers names chat tiers \(pro\) but no --backend"):
            await asyncio.wait_for(agent.run(), 10)
    assert agent.registrations == 0
