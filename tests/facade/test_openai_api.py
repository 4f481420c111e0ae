"""The OpenAI-compatible API through the official ``openai`` Python package (sync client, async client,
streaming) against a real network: a core, the facade, and a worker agent on loopback. The answers are
the same jobs, in the same ledger, as the network API's."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from ashao.v1 import image_pb2, image_pb2_grpc, network_pb2
from tests.helpers.core import connect_worker
from tests.helpers.livenet import LiveNet, live_network
from tests.helpers.openai_clients import api_key, async_client, prompt_estimate, sync_client, synthetic
from tests.helpers.sse import iter_events
from tests.helpers.stack import start_stack, stop_stack

pytestmark = pytest.mark.timeout(90)

ANSWER = synthetic(16)
"""The worker agent's (synthetic) answer to every question."""


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LiveNet]:
    async with live_network(tmp_path) as n:
        yield n


async def credits(http: httpx.AsyncClient, key: str) -> int:
    r = await http.get("/api/credits", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return int(r.json()["credits"])


async def test_the_sync_client_gets_a_whole_answer_from_the_same_jobs_and_ledger(net: LiveNet) -> None:
    http = net.stack.http
    key = await api_key(http, net.user_token)
    before = await credits(http, key)
    system, question = "Answer briefly, please.", "How does ashao route a prompt?"

    def ask() -> Any:
        with sync_client(net.url, key) as client:
            return client.chat.completions.create(
                model="ashao-pro",
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": [{"type": "text", "text": question}]},
                ],
            )

    r = await asyncio.to_thread(ask)
    assert r.object == "chat.completion" and r.model == "ashao-pro" and r.id.startswith("job_")
    [choice] = r.choices
    assert choice.message.role == "assistant" and choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.completion_tokens == 16
    assert r.usage.prompt_tokens == prompt_estimate(system, question)
    assert r.usage.total_tokens == r.usage.prompt_tokens + 16
    # One job of the pro tier, charged the tier's price, and a conversation holding what was said.
    models = {m["id"]: m for m in (await http.get("/v1/models")).json()["data"]}
    assert await credits(http, key) == before - models["ashao-pro"]["credit_cost"]
    auth = {"Authorization": f"Bearer {key}"}
    job = (await http.get(f"/api/jobs/{r.id}", headers=auth)).json()["job"]
    assert job["state"] == "done" and job["tier"] == "pro" and job["tokens"] == 16
    conversation = (await http.get(f"/api/conversations/{job['conversationId']}", headers=auth)).json()
    assert conversation["messages"] == [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
        {"role": "assistant", "content": ANSWER},
    ]


async def test_the_async_client_streams_chunks_then_the_usage(net: LiveNet) -> None:
    client = async_client(net.url, await api_key(net.stack.http, net.user_token))
    stream = await client.chat.completions.create(
        model="ashao-basic",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" and c.model == "ashao-basic" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("job_")
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == ANSWER
    assert [c.choices[0].finish_reason for c in with_choices][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.completion_tokens, last.usage.prompt_tokens) == (16, prompt_estimate("hi"))
    # Without include_usage there is no usage chunk; the raw stream ends with [DONE].
    async with net.stack.http.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "ashao-free", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    data = [orjson.loads(line[6:]) for line in lines[:-1]]
    assert all("usage" not in d and d["choices"] for d in data)
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in data) == ANSWER
    await client.close()


async def test_budget_and_stop_sequences_end_the_answer(net: LiveNet) -> None:
    client = async_client(net.url, await api_key(net.stack.http, net.user_token))
    ask: list[Any] = [{"role": "user", "content": "count"}]

    r = await client.chat.completions.create(model="ashao-free", messages=ask, max_tokens=5)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (synthetic(5), "length")
    r = await client.chat.completions.create(model="ashao-free", messages=ask, max_completion_tokens=3)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (synthetic(3), "length")
    assert r.usage is not None and r.usage.completion_tokens == 3
    r = await client.chat.completions.create(model="ashao-free", messages=ask, stop=["tok3", "tok9"])
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (synthetic(3), "stop")
    r = await client.chat.completions.create(model="ashao-free", messages=ask, stop="k2")
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("tok0 tok1 to", "stop")
    await client.close()


async def test_the_worker_gets_the_conversation_and_the_sampling_options(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    client = async_client(s.facade.url, "anonymous")  # the free model needs no key
    try:
        worker = await connect_worker(s.core)
        streaming = asyncio.create_task(
            client.chat.completions.create(
                model="ashao-free",
                messages=[
                    {"role": "developer", "content": "Be terse."},
                    {"role": "user", "content": "Say hello."},
                    {"role": "assistant", "content": "Hello?"},
                    {"role": "user", "content": "Again."},
                ],
                max_tokens=7,
                temperature=0.25,
                stop=["END"],
                stream=True,
            )
        )
        a = await worker.assignment()
        assert [(m.role, m.content) for m in a.messages] == [
            ("system", "Be terse."),
            ("user", "Say hello."),
            ("assistant", "Hello?"),
            ("user", "Again."),
        ]
        assert (a.model, a.max_tokens, a.temperature, list(a.stop)) == ("ashao-free", 7, 0.25, ["END"])
        await worker.tokens(a.job_id, ["Hel", "lo"])
        await worker.complete(a.job_id)
        chunks = [c async for c in await streaming]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
        assert chunks[-1].choices[0].finish_reason == "stop"

        # Without a temperature the worker is told none; a failure mid-answer raises in the SDK.
        streaming = asyncio.create_task(
            client.chat.completions.create(
                model="ashao-free", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        a = await worker.assignment()
        assert not a.HasField("temperature") and list(a.stop) == []
        await worker.tokens(a.job_id, ["part"])
        await worker.fail(a.job_id, retryable=False)
        got: list[str] = []
        with pytest.raises(openai.APIError) as failed:
            async for c in await streaming:
                got += [c.choices[0].delta.content or ""] if c.choices else []
        assert "".join(got) == "part" and "boom" in failed.value.message
    finally:
        await client.close()
        await stop_stack(s)


async def test_the_tiers_are_the_models(net: LiveNet) -> None:
    info = await net.stack.core.network.GetNetworkInfo(network_pb2.GetNetworkInfoRequest())
    client = async_client(net.url, "anonymous")
    models = [m async for m in client.models.list()]
    assert [m.id for m in models] == [t.model for t in info.tiers]
    assert {m.id for m in models} >= {"ashao-free", "ashao-basic", "ashao-pro", "ashao-ultra", "ashao-image"}
    pro = await client.models.retrieve("ashao-pro")
    tier = next(t for t in info.tiers if t.model == "ashao-pro")
    assert (pro.id, pro.owned_by, pro.object) == ("ashao-pro", "ashao", "model")
    assert (pro.model_extra or {}) == {
        "tier": "pro",
        "kind": "chat",
        "credit_cost": tier.credit_cost,
        "max_tokens": tier.max_tokens,
    }
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"
    await client.close()


async def test_images_come_by_url_or_inline(net: LiveNet) -> None:
    key = await api_key(net.stack.http, net.user_token)
    client = async_client(net.url, key)
    images = image_pb2_grpc.ImageServiceStub(net.stack.core.channel)

    by_url = await client.images.generate(prompt="a violet aurora", size="1792x1024")
    [item] = by_url.data
    assert item.url is not None and item.url.startswith(net.url + "/api/images/img_")
    assert item.revised_prompt == "a violet aurora"
    fetched = await net.stack.http.get(item.url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    stored = await images.GetImage(image_pb2.GetImageRequest(image_id=item.url.rsplit("/", 1)[1]))
    assert (stored.image.aspect, stored.image.style) == ("Landscape", "Photographic")
    assert stored.data == fetched.content

    inline = await client.images.generate(
        prompt="a quiet city",
        model="ashao-image",
        size="1024x1792",
        style="vivid",
        response_format="b64_json",
    )
    [item] = inline.data
    assert item.b64_json is not None and item.url is None
    assert base64.b64decode(item.b64_json).startswith(b"\x89PNG")

    with pytest.raises(openai.NotFoundError):
        await client.images.generate(prompt="x", model="dall-e-3")
    with pytest.raises(openai.BadRequestError) as bad:
        await client.images.generate(prompt="x", model="ashao-pro")
    assert bad.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.images.generate(prompt="x", size="big")
    assert bad.value.param == "size"
    with pytest.raises(openai.BadRequestError) as bad:
        await client.images.generate(prompt="x", n=2)
    assert bad.value.param == "n"
    anonymous = async_client(net.url, "anonymous")
    with pytest.raises(openai.AuthenticationError):
        await anonymous.images.generate(prompt="x")
    await client.close()
    await anonymous.close()


async def test_an_idempotency_key_makes_a_retry_the_same_answer(net: LiveNet) -> None:
    http = net.stack.http
    key = await api_key(http, net.user_token)
    client = async_client(net.url, key)
    before = await credits(http, key)
    ask: Any = {"model": "ashao-basic", "messages": [{"role": "user", "content": "once"}]}
    first = await client.chat.completions.create(**ask, extra_headers={"Idempotency-Key": "order-1"})
    again = await client.chat.completions.create(**ask, extra_headers={"Idempotency-Key": "order-1"})
    assert again.id == first.id and again.choices[0].message.content == ANSWER
    assert await credits(http, key) == before - 1  # charged once (basic costs 1)
    with pytest.raises(openai.ConflictError):
        await client.chat.completions.create(
            model="ashao-basic",
            messages=[{"role": "user", "content": "another"}],
            extra_headers={"Idempotency-Key": "order-1"},
        )
    await client.close()


async def test_events_arrive_as_the_worker_makes_them(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    try:
        worker = await connect_worker(s.core)
        async with s.http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "ashao-free", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ) as r:
            events = iter_events(r)
            assert (await anext(events))["data"]["choices"][0]["delta"] == {
                "role": "assistant",
                "content": "",
            }
            a = await worker.assignment()
            for piece in ("one ", "two "):
                await worker.tokens(a.job_id, [piece])
                event = await anext(events)  # this piece reaches the client before the next is made
                assert event["data"]["choices"][0]["delta"] == {"content": piece}
            await worker.complete(a.job_id)
            assert (await anext(events))["data"]["choices"][0]["finish_reason"] == "stop"
    finally:
        await stop_stack(s)
