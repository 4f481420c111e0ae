"""The agent against a real core (grpc.aio on loopback, SQLite in tmp_path), run as a task of the test."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from ashao.v1 import image_pb2, image_pb2_grpc, network_pb2
from core.jobs.model import JobState
from tests.helpers.agents import account, agent_settings, running
from tests.helpers.core import Core, collect, core_settings, start_core, stop_core
from tests.helpers.images import ImageServer, png
from tests.helpers.upstream import FakeUpstream
from tests.helpers.wait import eventually
from worker_agent import AgentError
from worker_agent.agent import Agent
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


async def test_pushed_job_arrives_in_few_token_batches(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address, synthetic_tokens=200)
    async with running(s) as (agent, _):
        job_id, _ = await core.send("count")
        events = await collect(core, job_id)
        assert tokens_of(events) == [f"tok{i} " for i in range(200)]
        assert events[-1] == (201, "done", 200)
        # the first token went out alone (time to first token), the rest in one or two batches
        assert 1 <= agent.batches_sent <= 6, agent.batches_sent
        assert agent.tokens_sent == 200


async def test_runs_jobs_at_once_up_to_its_slots(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address, slots=3, tokens_per_sec=40, synthetic_tokens=12)
    async with running(s) as (agent, _):
        jobs = [(await core.send(f"m{i}"))[0] for i in range(5)]
        seen = 0

        def watch() -> bool:
            nonlocal seen
            seen = max(seen, agent.running)
            assert agent.running <= 3
            return agent.jobs_started == 5 and agent.running == 0

        results = asyncio.gather(*(collect(core, j) for j in jobs))
        await eventually(watch)
        for events in await results:
            assert tokens_of(events) == [f"tok{i} " for i in range(12)]
        assert seen == 3


async def test_tokens_of_many_paced_jobs_share_batches(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address, slots=20, tokens_per_sec=200, synthetic_tokens=60)
    async with running(s) as (agent, _):
        jobs = [(await core.send(f"m{i}"))[0] for i in range(20)]
        for events in await asyncio.gather(*(collect(core, j) for j in jobs)):
            assert tokens_of(events) == [f"tok{i} " for i in range(60)]
        # 1,200 tokens over ~0.3 s: about one batch per flush interval plus each job's first token
        assert agent.tokens_sent == 1200 and agent.batches_sent < 120, agent.batches_sent


async def test_cancel_stops_the_job(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address)
    backend = SyntheticBackend(tokens=10_000, tokens_per_sec=50)
    async with running(s, backend) as (agent, _):
        job_id, _ = await core.send("long")
        await eventually(lambda: agent.tokens_sent >= 3)
        core.app.jobs.lifecycle.cancel(job_id, "cancelled by its owner")
        await eventually(lambda: agent.running == 0 and backend.pacing.active == 0)
        events = await collect(core, job_id)
        assert events[-1][1:] == ("error", "CANCELLED")
        sent = agent.tokens_sent
        await asyncio.sleep(0.1)
        assert agent.tokens_sent == sent and agent.connected
    await backend.aclose()


async def test_cancel_stops_the_upstream_request(tmp_path: Path, core: Core) -> None:
    async with FakeUpstream([f"w{i} " for i in range(200)], delay_s=0.02).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}/v1", model="m")
        s = agent_settings(tmp_path, core.app.address, backend="openai", upstream=backend_url(up), model="m")
        async with running(s, backend) as (agent, _):
            job_id, _ = await core.send("long")
            await eventually(lambda: agent.tokens_sent >= 2)
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


async def test_drain_with_nothing_running_exits_promptly(tmp_path: Path, core: Core) -> None:
    s = agent_settings(tmp_path, core.app.address)
    async with running(s) as (agent, task):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        agent.drain()
        await asyncio.wait_for(task, 5)
        assert loop.time() - t0 < 1.0


async def test_drain_timeout_hands_jobs_back_and_another_worker_continues(tmp_path: Path, core: Core) -> None:
    s = agent_settings(
        tmp_path, core.app.address, tokens_per_sec=20, synthetic_tokens=40, drain_timeout_s=0.3
    )
    job_id, _ = await core.send("long")
    async with running(s) as (agent, task):
        await eventually(lambda: agent.tokens_sent >= 3)
        agent.drain()
        await asyncio.wait_for(task, 5)
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
    c = await start_core(core_settings(tmp_path, heartbeat_interval_ms=150, worker_registration="open"))
    try:
        s = agent_settings(tmp_path, c.app.address, tokens_per_sec=100, synthetic_tokens=100)
        async with running(s) as (agent, _):
            job_id, _ = await c.send("x")
            await asyncio.sleep(0.6)
            rate = (await account(c, agent)).tokens_per_sec
            assert 50 <= rate <= 150, rate
            events = await collect(c, job_id)  # ~1 s: far longer than 3 heartbeat intervals
            assert events[-1][1:] == ("done", 100)
            await asyncio.sleep(0.6)  # idle: heartbeats alone keep the stream
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
        await asyncio.sleep(0.3)  # a few failed attempts while the core is down
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
        await asyncio.sleep(0.3)
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
    agent = Agent(settings=agent_settings(tmp_path, f"127.0.0.1:{port}", call_timeout_s=30), backend=None)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(0.3)
        assert not task.done() and not agent.connected
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        getattr(agent, stop)()
        await asyncio.wait_for(task, 2)
        assert loop.time() - t0 < 1.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


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
