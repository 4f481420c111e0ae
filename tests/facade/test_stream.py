"""The SSE path through the facade: live tokens, keep-alives, bounded buffers, disconnects, core restarts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from ashao.v1 import chat_pb2
from facade.config import FacadeSettings
from facade.mux import Mux
from tests.helpers.core import connect_worker
from tests.helpers.sse import iter_events, read_sse
from tests.helpers.stack import Stack, start_again, start_stack, stop_core_keeping_port, stop_stack
from tests.helpers.tls import self_signed
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


async def send(http: httpx.AsyncClient, content: str = "hi", tier: str = "free") -> str:
    r = await http.post("/api/chat/send", json={"tier": tier, "content": content})
    assert r.status_code == 200, r.text
    return str(r.json()["jobId"])


def tokens_of(events: list[dict[str, object]]) -> list[str]:
    return [
        e["data"]["value"] for e in events if isinstance(e.get("data"), dict) and e["data"]["type"] == "token"
    ]  # type: ignore[index]


async def test_live_tokens_arrive_as_produced_then_done(stack: Stack) -> None:
    worker = await connect_worker(stack.core)
    job = await send(stack.http)
    reader = asyncio.create_task(read_sse(stack.http, f"/api/chat/stream?jobId={job}"))
    a = await worker.assignment()
    assert a.job_id == job
    mux = stack.facade.core_client.mux
    await eventually(lambda: len(mux) == 1)
    await eventually(lambda: mux.direct == 1)  # its frames go straight to the socket
    for i in range(5):
        await worker.tokens(job, [f"t{i} "])
        await asyncio.sleep(0.01)
    await worker.complete(job)
    status, events = await asyncio.wait_for(reader, 10)
    assert status == 200
    assert [e["id"] for e in events] == [str(i) for i in range(1, 7)]
    assert tokens_of(events) == [f"t{i} " for i in range(5)]
    assert events[-1]["data"] == {"type": "done", "tokens": 5}
    await eventually(lambda: len(stack.facade.core_client.mux) == 0)


async def test_idle_stream_gets_keepalives_and_release_on_disconnect(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, sse_keepalive_s=0.2)
    try:
        job = await send(s.http)
        comments = 0
        async with s.http.stream("GET", f"/api/chat/stream?jobId={job}") as r:
            assert r.status_code == 200 and r.headers["x-accel-buffering"] == "no"
            async for line in r.aiter_lines():
                if line == ": keep-alive":
                    comments += 1
                    if comments == 2:
                        break
        assert comments == 2
        # the client left: the facade and the core both let go of the subscription
        await eventually(lambda: len(s.facade.core_client.mux) == 0)
        log = s.core.app.jobs.board.get(job).log
        await eventually(lambda: log.listeners == 0)
    finally:
        await stop_stack(s)


async def test_slow_consumer_is_cut_off_with_an_error_event(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, sse_max_buffer_bytes=2_000)
    try:
        worker = await connect_worker(s.core)
        job = await send(s.http)
        reader = asyncio.create_task(read_sse(s.http, f"/api/chat/stream?jobId={job}"))
        await worker.assignment()
        await eventually(lambda: len(s.facade.core_client.mux) == 1)
        await worker.tokens(job, [f"token-{i} " for i in range(400)])  # far more than 2,000 bytes at once
        status, events = await asyncio.wait_for(reader, 10)
        assert status == 200 and events[-1]["data"]["type"] == "error"
        assert "Last-Event-ID" in events[-1]["data"]["message"]
        assert s.facade.core_client.mux.cut_off == 1
        # it may resume where it was cut off
        last = max(int(e["id"]) for e in events if e["data"]["type"] == "token")
        await worker.complete(job)
        status, rest = await read_sse(
            s.http, f"/api/chat/stream?jobId={job}", headers={"Last-Event-ID": str(last)}
        )
        assert tokens_of(rest) == [f"token-{i} " for i in range(last, 400)]
        assert rest[-1]["data"] == {"type": "done", "tokens": 400}
    finally:
        await stop_stack(s)


async def test_stream_survives_a_core_restart(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    try:
        job = await send(s.http, "queued across a restart")
        reader = asyncio.create_task(read_sse(s.http, f"/api/chat/stream?jobId={job}"))
        await eventually(lambda: len(s.facade.core_client.mux) == 1)
        app = await stop_core_keeping_port(s)
        # while the core is away, new streams are refused with a real status, not a hanging 200
        r = await s.http.get(f"/api/chat/stream?jobId={job}")
        assert r.status_code == 503 and set(r.json()) == {"error"}
        core = await start_again(s, app)
        worker = await connect_worker(core)
        a = await worker.assignment(timeout=10)
        assert a.job_id == job
        await worker.tokens(job, ["after ", "restart"])
        await worker.complete(job)
        status, events = await asyncio.wait_for(reader, 15)
        assert status == 200 and tokens_of(events) == ["after ", "restart"]
        assert events[-1]["data"] == {"type": "done", "tokens": 2}
    finally:
        await stop_stack(s)


async def test_opening_a_stream_fails_fast_while_the_core_is_unreachable(tmp_path: Path) -> None:
    call_timeout_s = 16.0
    s = await start_stack(tmp_path, call_timeout_s=call_timeout_s)
    try:
        job = await send(s.http)
        mux = s.facade.core_client.mux
        app = await stop_core_keeping_port(s)
        await eventually(lambda: not mux.connected)
        # a 503 well within the call deadline, as a send gets (not a wait of the whole deadline)
        r = await asyncio.wait_for(s.http.get(f"/api/chat/stream?jobId={job}"), call_timeout_s / 2)
        assert r.status_code == 503 and set(r.json()) == {"error"}
        assert "unreachable" in r.json()["error"]
        r = await asyncio.wait_for(
            s.http.post("/api/chat/send", json={"tier": "free", "content": "x"}), call_timeout_s / 2
        )
        assert r.status_code == 503
        await start_again(s, app)
        await eventually(lambda: mux.connected)
        async with s.http.stream("GET", f"/api/chat/stream?jobId={job}") as r:
            assert r.status_code == 200
    finally:
        await stop_stack(s)


async def test_sends_after_the_core_restarts_are_answered_not_lost(tmp_path: Path) -> None:
    call_timeout_s = 16.0
    s = await start_stack(tmp_path, call_timeout_s=call_timeout_s)
    try:
        client = s.facade.core_client
        await send(s.http)
        await start_again(s, await stop_core_keeping_port(s))
        await eventually(lambda: client.mux.connected and client.sender.connected)
        for i in range(3):  # each answered by the core, well within the deadline
            r = await asyncio.wait_for(
                s.http.post("/api/chat/send", json={"tier": "free", "content": f"after {i}"}),
                call_timeout_s / 2,
            )
            assert r.status_code == 200, r.text
    finally:
        await stop_stack(s)


async def test_restart_mid_answer_is_an_error_not_a_splice(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    try:
        worker = await connect_worker(s.core)
        job = await send(s.http)
        seen: list[dict[str, Any]] = []
        reader = asyncio.create_task(read_sse(s.http, f"/api/chat/stream?jobId={job}", into=seen))
        await worker.assignment()
        await eventually(lambda: len(s.facade.core_client.mux) == 1)
        await worker.tokens(job, ["first ", "attempt "])
        await eventually(lambda: len(seen) == 2)  # the two tokens reached the client
        worker.cancel()
        await start_again(s, await stop_core_keeping_port(s))
        status, events = await asyncio.wait_for(reader, 15)
        assert status == 200 and tokens_of(events) == ["first ", "attempt "]
        last = events[-1]
        assert last["data"]["type"] == "error" and "stopped mid-answer" in last["data"]["message"]
        assert last["id"] == "3"  # after the two tokens the client has

    finally:
        await stop_stack(s)


async def test_reconnecting_after_the_last_event_of_a_finished_job_is_204(stack: Stack) -> None:
    worker = await connect_worker(stack.core)
    done_job, failed_job = await send(stack.http), await send(stack.http)
    for job in (await worker.assignment()).job_id, (await worker.assignment()).job_id:
        await worker.tokens(job, ["a ", "b"])
    await worker.complete(done_job)
    await worker.fail(failed_job, retryable=False)
    for job, kind in ((done_job, "done"), (failed_job, "error")):
        status, events = await asyncio.wait_for(read_sse(stack.http, f"/api/chat/stream?jobId={job}"), 10)
        assert status == 200 and events[-1]["id"] == "3" and events[-1]["data"]["type"] == kind
        # what an EventSource that was not closed sends after the terminal event (or past it)
        for headers, query in (
            ({"Last-Event-ID": "3"}, ""),
            ({}, "&lastEventId=3"),
            ({"Last-Event-ID": "9"}, ""),
        ):
            r = await asyncio.wait_for(
                stack.http.get(f"/api/chat/stream?jobId={job}{query}", headers=headers), 5
            )
            assert r.status_code == 204 and r.content == b"", (job, headers, query)
        # one event short of the end still gets the terminal event
        status, rest = await asyncio.wait_for(
            read_sse(stack.http, f"/api/chat/stream?jobId={job}", headers={"Last-Event-ID": "2"}), 10
        )
        assert status == 200 and [e["id"] for e in rest] == ["3"] and rest[0]["data"]["type"] == kind
        await eventually(lambda j=job: unwatched(stack, j))  # nothing left watching it


def unwatched(s: Stack, job_id: str) -> bool:
    """Neither the facade nor the core follows ``job_id`` any more."""
    log = s.core.app.jobs.board.bus.find(job_id)
    return len(s.facade.core_client.mux) == 0 and (log is None or log.listeners == 0)


async def test_stream_bad_requests(stack: Stack) -> None:
    r = await stack.http.get("/api/chat/stream")
    assert r.status_code == 400 and "jobId" in r.json()["error"]
    r = await stack.http.get("/api/chat/stream?jobId=job_unknown123456789")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    job = await send(stack.http)
    r = await stack.http.get(f"/api/chat/stream?jobId={job}", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]


def test_settings_default_addresses() -> None:
    s = FacadeSettings()
    assert (s.http_addr, s.grpc_addr) == ("127.0.0.1:8080", "127.0.0.1:50051")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_facade_reaches_a_tls_core(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    s = await start_stack(tmp_path, {"tls_cert_file": cert, "tls_key_file": key}, core_tls_ca_file=cert)
    try:
        r = await s.http.get("/api/stats")
        assert r.status_code == 200 and r.json()["queueDepth"] == 0
        job = await send(s.http)
        r = await s.http.get(f"/api/jobs/{job}")
        assert r.status_code == 200 and r.json()["job"]["state"] == "queued"
    finally:
        await stop_stack(s)


async def test_streams_keep_working_after_the_mux_fails_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dispatch = Mux._dispatch
    injected: list[object] = []

    def fail_once_on_tokens(self: Mux, response: chat_pb2.SubscribeResponse) -> None:
        if not injected and any(ev.WhichOneof("kind") == "chunk" for ev in response.events):
            injected.append(response)
            raise RuntimeError("injected dispatch failure")
        dispatch(self, response)

    monkeypatch.setattr(Mux, "_dispatch", fail_once_on_tokens)
    worker = await connect_worker(stack.core)
    job = await send(stack.http)
    await worker.assignment()
    async with stack.http.stream("GET", f"/api/chat/stream?jobId={job}") as r:
        assert r.status_code == 200  # the stream is open: the failure below hits it in flight
        events = iter_events(r)
        await worker.tokens(job, ["before "])
        await eventually(lambda: bool(injected))
        await worker.tokens(job, ["after"])
        await worker.complete(job)
        got = [await asyncio.wait_for(anext(events), 10) for _ in range(3)]
    # it resumed where it was (re-watched after its last event): nothing lost, nothing doubled
    assert tokens_of(got) == ["before ", "after"]
    assert [e["id"] for e in got] == ["1", "2", "3"] and got[-1]["data"] == {"type": "done", "tokens": 2}
    assert "injected dispatch failure" in caplog.text  # logged with its traceback, never silent
    # and the process still streams: a new job's stream works too
    job2 = await send(stack.http)
    reader = asyncio.create_task(read_sse(stack.http, f"/api/chat/stream?jobId={job2}"))
    await worker.assignment()
    await worker.tokens(job2, ["again"])
    await worker.complete(job2)
    status, events2 = await asyncio.wait_for(reader, 10)
    assert status == 200 and tokens_of(events2) == ["again"]
