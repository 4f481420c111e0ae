"""The network API over real processes: HTTP send, SSE stream, worker agents, the REST pull path."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from ashao_cli.devnet import LocalNetwork
from tests.helpers.sse import sse, text_of
from tests.helpers.upstream import FakeUpstream
from tests.helpers.wait import eventually_async

pytestmark = pytest.mark.timeout(90)


async def wait_workers(http: httpx.AsyncClient, n: int) -> None:
    async def active() -> bool:
        return bool((await http.get("/api/stats")).json()["activeWorkers"] >= n)

    await eventually_async(active, timeout=15)


async def wait_tokens(http: httpx.AsyncClient, job_id: str, n: int) -> None:
    """Until the job has produced ``n`` tokens."""

    async def produced() -> bool:
        return bool((await http.get(f"/api/jobs/{job_id}")).json()["job"]["tokens"] >= n)

    await eventually_async(produced)


async def test_send_stream_persist_with_openai_backend(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    async with FakeUpstream(["Hello", ",", " world"]).running() as up:
        net.start_worker(
            "gpu-1",
            "--backend",
            "openai",
            "--upstream",
            f"http://127.0.0.1:{up.port}/v1",
            "--model",
            "tiny-model",
            "--slots",
            "2",
        )
        await wait_workers(http, 1)
        r = await http.post("/api/chat/send", json={"tier": "free", "content": "Say hello."})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"jobId", "conversationId"}
        assert body["jobId"].startswith("job_") and body["conversationId"].startswith("conv_")
        events = await sse(http, body["jobId"])
        assert events == [
            ("1", {"type": "token", "value": "Hello"}),
            ("2", {"type": "token", "value": ","}),
            ("3", {"type": "token", "value": " world"}),
            ("4", {"type": "done", "tokens": 3}),
        ]
        assert up.requests[0]["model"] == "tiny-model" and up.requests[0]["stream"] is True
        # the reply is persisted; a follow-up carries the whole history to the worker
        conv = (await http.get(f"/api/conversations/{body['conversationId']}")).json()
        assert conv["messages"] == [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello, world"},
        ]
        r2 = await http.post(
            "/api/chat/send",
            json={"tier": "free", "content": "Again.", "conversationId": body["conversationId"]},
        )
        assert (await sse(http, r2.json()["jobId"]))[-1][1] == {"type": "done", "tokens": 3}
        assert [m["content"] for m in up.requests[1]["messages"]] == ["Say hello.", "Hello, world", "Again."]


async def test_resume_with_last_event_id_and_late_open(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    net.start_worker("syn", "--backend", "synthetic", "--tokens-per-sec", "0", "--synthetic-tokens", "8")
    await wait_workers(http, 1)
    job = (await http.post("/api/chat/send", json={"tier": "free", "content": "x"})).json()["jobId"]
    full = await sse(http, job)
    assert [i for i, _ in full] == [str(i) for i in range(1, 10)]
    assert full[-1][1] == {"type": "done", "tokens": 8}
    assert await sse(http, job) == full  # opened after the job finished: everything
    assert await sse(http, job, last_event_id="5") == full[5:]


async def test_bad_input_is_400_naming_the_field(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    cases = [
        ({"tier": "gold", "content": "x"}, "tier"),
        ({"tier": "free", "content": ""}, "content"),
        ({"tier": "free", "content": "x" * 40_000}, "content"),
        ({"tier": "free", "content": "x", "conversationId": "bogus"}, "conversationId"),
        ({"tier": "free", "content": "x", "conversationId": "conv_unknown1234567890"}, "conversationId"),
        ({"tier": "free", "content": 5}, "content"),
        ({"content": "x"}, "tier"),
    ]
    for payload, field in cases:
        r = await http.post("/api/chat/send", json=payload)
        assert r.status_code == 400, (payload, r.text)
        assert set(r.json()) == {"error"} and field in r.json()["error"], (payload, r.json())
    r = await http.post("/api/chat/send", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    stats = (await http.get("/api/stats")).json()
    assert stats["queueDepth"] == 0  # nothing was queued for any of them
    r = await http.get("/api/chat/stream", params={"jobId": "job_doesnotexist12345"})
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = await http.get("/api/chat/stream")
    assert r.status_code == 400 and "jobId" in r.json()["error"]


async def test_rest_pull_worker(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    body = {"name": "simple", "tiers": ["free"], "joinToken": net.join_token()}
    reg = (await http.post("/api/worker/register", json=body)).json()
    auth = {"Authorization": f"Bearer {reg['workerToken']}"}
    assert reg["workerId"].startswith("wrk_")
    assert (await http.post("/api/worker/claim", json={"tier": "free"})).status_code == 401
    assert (await http.post("/api/worker/claim", json={"tier": "free"}, headers=auth)).json() == {"job": None}
    job_id = (await http.post("/api/chat/send", json={"tier": "free", "content": "pull me"})).json()["jobId"]
    claim = (await http.post("/api/worker/claim", json={"tier": "free"}, headers=auth)).json()
    assert claim["job"] == {"id": job_id, "tier": "free", "model": "ashao-free"}
    assert claim["messages"] == [{"role": "user", "content": "pull me"}]
    stream = asyncio.create_task(sse(http, job_id))
    for i, tok in enumerate(["pulled ", "tokens"]):
        r = await http.post(
            "/api/worker/token", json={"jobId": job_id, "token": tok, "index": i}, headers=auth
        )
        assert r.status_code == 200
    other = (
        await http.post("/api/worker/register", json={"name": "other", "joinToken": net.join_token()})
    ).json()

    r = await http.post(
        "/api/worker/token",
        json={"jobId": job_id, "token": "x"},
        headers={"Authorization": f"Bearer {other['workerToken']}"},
    )
    assert r.status_code == 403 and "error" in r.json()
    assert (
        await http.post("/api/worker/heartbeat", json={"tokensPerSec": 3.5}, headers=auth)
    ).status_code == 200
    done = (await http.post("/api/worker/complete", json={"jobId": job_id}, headers=auth)).json()
    assert done["ok"] is True and done["tokens"] == 2
    events = await asyncio.wait_for(stream, 10)
    assert text_of(events) == "pulled tokens" and events[-1][1] == {"type": "done", "tokens": 2}
    stats = (await http.get("/api/stats")).json()
    assert stats["jobsCompleted"] == 1 and stats["activeWorkers"] >= 1


async def test_killed_worker_job_finishes_on_another(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    first = net.start_worker(
        "w1", "--backend", "synthetic", "--tokens-per-sec", "20", "--synthetic-tokens", "40"
    )
    await wait_workers(http, 1)
    job = (await http.post("/api/chat/send", json={"tier": "free", "content": "long"})).json()["jobId"]
    stream = asyncio.create_task(sse(http, job))
    await wait_tokens(http, job, 5)
    first.send_signal(signal.SIGKILL)
    net.start_worker("w2", "--backend", "synthetic", "--tokens-per-sec", "200", "--synthetic-tokens", "40")
    events = await asyncio.wait_for(stream, 60)
    assert events[-1][1] == {"type": "done", "tokens": 40}
    # seamless: the second worker continued the numbering where the first stopped
    assert text_of(events) == "".join(f"tok{i} " for i in range(40))
    assert [i for i, _ in events] == [str(i) for i in range(1, 42)]
    assert (await http.get(f"/api/jobs/{job}")).json()["job"]["attempts"] == 2


async def test_worker_drains_on_sigterm(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    w = net.start_worker(
        "drainer", "--backend", "synthetic", "--tokens-per-sec", "20", "--synthetic-tokens", "30"
    )
    await wait_workers(http, 1)
    job = (await http.post("/api/chat/send", json={"tier": "free", "content": "finish me"})).json()["jobId"]
    stream = asyncio.create_task(sse(http, job))
    await wait_tokens(http, job, 2)
    w.send_signal(signal.SIGTERM)
    events = await asyncio.wait_for(stream, 30)
    assert events[-1][1] == {"type": "done", "tokens": 30}
    assert (await http.get(f"/api/jobs/{job}")).json()["job"]["attempts"] == 1  # finished by the drainer
    assert await asyncio.to_thread(w.wait, 30) == 0
