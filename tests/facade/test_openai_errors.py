"""Failures of the OpenAI-compatible API as the official ``openai`` package sees them: each is OpenAI's
error body with the status that makes the SDK raise its own exception (AuthenticationError,
NotFoundError, BadRequestError, RateLimitError after honouring Retry-After, 402 for no credits, 503
and 504), decided before the first byte; and a client that leaves lets go of its answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers.agents import agent_settings, running
from tests.helpers.core import connect_worker
from tests.helpers.livenet import LiveNet, live_network
from tests.helpers.openai_clients import api_key, async_client, sync_client, synthetic
from tests.helpers.stack import start_stack, stop_core_keeping_port, stop_stack
from tests.helpers.wait import eventually
from tests.helpers.wallet import sign_in_over_http

pytestmark = pytest.mark.timeout(90)

HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LiveNet]:
    async with live_network(tmp_path) as n:
        yield n


def openai_error(r: httpx.Response) -> dict[str, Any]:
    """The error of an OpenAI error body (and nothing else in it)."""
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, Any] = body["error"]
    return error


async def test_bad_keys_and_unknown_models(net: LiveNet) -> None:
    async with async_client(net.url, "ak_not_a_key") as bogus:
        with pytest.raises(openai.AuthenticationError) as denied:
            await bogus.chat.completions.create(model="ashao-free", messages=HI)
    assert denied.value.code == "invalid_api_key"
    async with async_client(net.url, "anonymous") as anonymous:
        await _anonymous_refusals(anonymous)


async def _anonymous_refusals(anonymous: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as denied:
        await anonymous.chat.completions.create(model="ashao-pro", messages=HI)  # priced: needs a key
    assert denied.value.code == "missing_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        await anonymous.chat.completions.create(model="gpt-4o", messages=HI)
    assert (missing.value.code, missing.value.param, missing.value.type) == (
        "model_not_found",
        "model",
        "invalid_request_error",
    )
    with pytest.raises(openai.BadRequestError) as bad:
        await anonymous.chat.completions.create(model="ashao-image", messages=HI)
    assert bad.value.param == "model"


BAD: list[tuple[dict[str, Any], str]] = [
    ({"temperature": 3}, "temperature"),
    ({"temperature": "warm"}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        "messages[1].role",
    ),
    ({"messages": [{"role": "user", "content": "  "}]}, "messages[0].content"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 513}, "max_tokens"),  # more than the free model allows
    ({"max_completion_tokens": 513}, "max_completion_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 7}, "stop"),
    ({"n": 2}, "n"),
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": 5}, "model"),
]


@pytest.mark.parametrize(("change", "param"), BAD, ids=[p for _, p in BAD])
async def test_bad_input_is_400_naming_the_parameter(
    tmp_path: Path, change: dict[str, Any], param: str
) -> None:
    s = await start_stack(tmp_path)
    try:
        body = {"model": "ashao-free", "messages": HI, **change}
        r = await s.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, r.text
        error = openai_error(r)
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), error
        assert error["message"].startswith(f"{param}: "), error
        assert len(s.facade.core_client.mux) == 0  # nothing is followed for it
        # ...and the SDK raises its BadRequestError for it
        async with async_client(s.facade.url, "anonymous") as client:
            with pytest.raises(openai.BadRequestError) as bad:
                await client.chat.completions.create(**body)
        assert bad.value.param == param
    finally:
        await stop_stack(s)


async def test_what_never_reaches_a_route_is_in_the_same_shape(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, max_body_bytes=1000)
    try:
        r = await s.http.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 400 and openai_error(r)["param"] == "body"
        r = await s.http.post("/v1/chat/completions", json={"messages": HI})
        assert r.status_code == 400 and openai_error(r)["code"] == "missing_required_parameter"
        r = await s.http.post("/v1/chat/completions", json={"model": "ashao-free", "messages": HI * 100})
        assert r.status_code == 413 and openai_error(r)["code"] == "request_too_large"
        r = await s.http.get("/v1/no/such/thing")
        assert r.status_code == 404 and openai_error(r)["code"] == "unknown_url"
        r = await s.http.delete("/v1/models")
        assert r.status_code == 405 and r.headers["allow"] == "GET" and openai_error(r)
    finally:
        await stop_stack(s)


async def test_no_credits_is_402_and_the_sdk_does_not_retry(net: LiveNet) -> None:
    http = net.stack.http
    r = await http.post("/api/keys", json={}, headers={"Authorization": f"Bearer {net.user_token}"})
    rich = r.json()["secret"]
    # A new user has the sign-up grant only: spend it on the ultra tier.
    _, session = await sign_in_over_http(http)
    key = await api_key(http, session)
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(100):
        if (await http.get("/api/credits", headers=auth)).json()["credits"] < 10:
            break
        sent = await http.post("/api/chat/send", json={"tier": "ultra", "content": "x"}, headers=auth)
        assert sent.status_code == 200, sent.text
    async with async_client(net.url, key, max_retries=2) as client:
        with pytest.raises(openai.APIStatusError) as poor:
            await client.chat.completions.create(model="ashao-ultra", messages=HI)
    e = poor.value
    assert (e.status_code, e.code, e.type) == (402, "insufficient_credits", "insufficient_quota")
    assert e.response.headers["x-should-retry"] == "false"
    assert e.response.request.headers.get("x-stainless-retry-count") == "0"  # asked once
    # Another user's key still works: the refusal was this caller's alone.
    async with async_client(net.url, rich) as client:
        ok = await client.chat.completions.create(model="ashao-ultra", messages=HI)
    assert ok.choices[0].message.content == synthetic(16)


async def test_the_rate_limit_is_429_with_retry_after_which_the_sdk_honours(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, {"send_rate_per_ip": 0.5, "send_burst_per_ip": 1})
    settings = agent_settings(tmp_path, s.core.app.address, join_token=await s.core.join_token())
    try:
        async with running(settings):

            def burst() -> tuple[Any, openai.RateLimitError, Any]:
                with sync_client(s.facade.url, "anonymous") as impatient:
                    first = impatient.chat.completions.create(model="ashao-free", messages=HI)
                    try:
                        impatient.chat.completions.create(model="ashao-free", messages=HI)
                    except openai.RateLimitError as limited:
                        refused = limited
                    else:
                        raise AssertionError("the second send in a row was not limited")
                with sync_client(s.facade.url, "anonymous", max_retries=3) as patient:
                    raw = patient.chat.completions.with_raw_response.create(model="ashao-free", messages=HI)
                    return first, refused, (raw.retries_taken, raw.parse())

            first, refused, later = await asyncio.to_thread(burst)
        assert first.choices[0].message.content == synthetic(16)
        assert refused.status_code == 429 and refused.code == "rate_limit_exceeded"
        assert int(refused.response.headers["retry-after"]) >= 1
        retries, answer = later
        assert retries >= 1  # refused first, then let in after waiting as told
        assert answer.choices[0].message.content == synthetic(16)
    finally:
        await stop_stack(s)


async def test_an_answer_no_worker_takes_is_503_whole_or_streamed(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, {"queue_timeout_s": 0.2})
    client = async_client(s.facade.url, "anonymous")
    try:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(model="ashao-free", messages=HI)
        assert (failed.value.status_code, failed.value.code) == (503, "expired")
        stream = await client.chat.completions.create(model="ashao-free", messages=HI, stream=True)
        with pytest.raises(openai.APIError) as cut:
            async for _ in stream:
                pass
        assert cut.value.code == "expired"
    finally:
        await client.close()
        await stop_stack(s)


async def test_a_core_out_of_reach_is_503_before_anything_is_sent(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, core_connect_wait_s=0.2)
    client = async_client(s.facade.url, "anonymous")
    try:
        await stop_core_keeping_port(s)
        for call in (
            client.chat.completions.create(model="ashao-free", messages=HI),
            client.chat.completions.create(model="ashao-free", messages=HI, stream=True),
            client.models.list(),
        ):
            with pytest.raises(openai.InternalServerError) as down:
                await call
            assert (down.value.status_code, down.value.code) == (503, "service_unavailable")
    finally:
        await client.close()
        await s.http.aclose()
        await s.facade.stop()


async def test_a_whole_answer_that_takes_too_long_is_504_naming_its_job(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, completion_timeout_s=0.3)
    try:
        worker = await connect_worker(s.core)
        r = await s.http.post("/v1/chat/completions", json={"model": "ashao-free", "messages": HI})
        a = await worker.assignment()
        assert r.status_code == 504 and r.headers["x-should-retry"] == "false"
        error = openai_error(r)
        assert error["code"] == "timeout" and f"jobId={a.job_id}" in error["message"]
        await eventually(lambda: len(s.facade.core_client.mux) == 0)
    finally:
        await stop_stack(s)


async def test_a_client_that_leaves_lets_go_of_its_answer(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    try:
        worker = await connect_worker(s.core)
        for stream in (False, True):
            body = {"model": "ashao-free", "messages": HI, "stream": stream}
            request = asyncio.create_task(s.http.post("/v1/chat/completions", json=body))
            a = await worker.assignment()
            await eventually(lambda: len(s.facade.core_client.mux) == 1)
            request.cancel()  # the client hangs up while the answer is being made
            await asyncio.wait([request])
            await eventually(lambda: len(s.facade.core_client.mux) == 0)
            log = s.core.app.jobs.board.get(a.job_id).log
            await eventually(lambda log=log: log.listeners == 0)  # ...and so does the core
    finally:
        await stop_stack(s)


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "\udfff"}]}]},
        "messages[0].content",
    ),
    ({"stop": ["\ud800"]}, "stop"),
    ({"model": "\ud800"}, "model"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"max_tokens": 2**70}, "max_tokens"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"messages": [{"role": "user", "content": "x" * 40_000}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "x"}] * 201}, "messages"),
]


async def test_hostile_values_are_400_naming_the_field_never_500(tmp_path: Path) -> None:
    s = await start_stack(tmp_path)
    try:
        for change, param in HOSTILE:
            body = json.dumps({"model": "ashao-free", "messages": HI, **change})  # (\ud800 escaped, NaN bare)
            r = await s.http.post(
                "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, (change, r.text)
            assert openai_error(r)["param"] == param, (change, r.text)
        r = await s.http.post(
            "/v1/chat/completions",
            json={"model": "ashao-free", "messages": HI},
            headers={"Idempotency-Key": "k" * 129},
        )
        assert r.status_code == 400 and openai_error(r)["param"] == "Idempotency-Key"
        r = await s.http.post(
            "/v1/chat/completions",
            json={"model": "ashao-free", "messages": HI},
            headers={"Authorization": b"Bearer ak_\xe9t\xe9"},  # Latin-1 bytes: not ASCII, as HTTP allows
        )
        assert r.status_code == 401 and openai_error(r)["code"] == "invalid_api_key"
        # none of it broke anything: a good request is still answered
        worker = await connect_worker(s.core)
        asked = asyncio.create_task(
            s.http.post("/v1/chat/completions", json={"model": "ashao-free", "messages": HI})
        )
        a = await worker.assignment()
        await worker.tokens(a.job_id, ["fine"])
        await worker.complete(a.job_id)
        r = await asked
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fine"
    finally:
        await stop_stack(s)
