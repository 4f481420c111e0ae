"""The OpenAI-compatible chat backend against a real streaming HTTP server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import pytest

from tests.helpers.upstream import FakeUpstream
from tests.helpers.wait import eventually
from worker_agent.backends import BackendError, ChatMessage, ChatRequest
from worker_agent.backends.openai import OpenAIBackend, chat_completions_url

pytestmark = pytest.mark.timeout(30)


def request(prefix: str = "", max_tokens: int = 64) -> ChatRequest:
    return ChatRequest(
        job_id="job_test",
        messages=(ChatMessage("system", "be brief"), ChatMessage("user", "Say hello.")),
        max_tokens=max_tokens,
        prefix=prefix,
    )


def test_url_with_or_without_v1() -> None:
    for upstream in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert chat_completions_url(upstream) == "http://h:1/v1/chat/completions"


async def test_streams_pieces_in_order_and_sends_the_request() -> None:
    words = ["Hello", ",", " world", "!"]
    async with FakeUpstream(words, delay_s=0.01).running() as up:
        for suffix in ("", "/v1"):
            backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}{suffix}", model="tiny", api_key="k")
            got: list[list[str]] = []
            try:
                finish = await backend.generate(request(), lambda toks, got=got: got.append(list(toks)))
            finally:
                await backend.aclose()
            assert finish == "stop"
            assert got == [[w] for w in words]  # one emit per piece, as they arrive
        body = up.requests[-1]
        assert body["model"] == "tiny" and body["stream"] is True and body["max_tokens"] == 64
        assert body["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "Say hello."},
        ]
        assert "temperature" not in body and "stop" not in body  # the server's defaults


async def test_the_callers_temperature_and_stop_sequences_go_to_the_server() -> None:
    async with FakeUpstream(["Hi"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        try:
            for temperature in (0.0, 1.5):
                asked = dataclasses.replace(request(), temperature=temperature, stop=("\n\n", "END"))
                await backend.generate(asked, lambda _: None)
        finally:
            await backend.aclose()
        assert [(b["temperature"], b["stop"]) for b in up.requests] == [
            (0.0, ["\n\n", "END"]),
            (1.5, ["\n\n", "END"]),
        ]


async def test_pieces_are_emitted_before_the_answer_ends() -> None:
    # An upstream that takes an hour between pieces: the first one must be passed on meanwhile.
    async with FakeUpstream(["a", "b", "c"], delay_s=3600).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        got: list[str] = []
        task = asyncio.create_task(backend.generate(request(), got.extend))
        try:
            await eventually(lambda: bool(got))
            assert got == ["a"] and not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await eventually(lambda: up.abandoned == 1)  # the request went away with the job
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await backend.aclose()


async def test_continuation_sends_the_prefix_as_assistant_message() -> None:
    async with FakeUpstream([" more"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}/v1", model="m")
        try:
            await backend.generate(request(prefix="Hello, wor", max_tokens=10), lambda _: None)
        finally:
            await backend.aclose()
        body = up.requests[0]
        assert body["messages"][-1] == {"role": "assistant", "content": "Hello, wor"}
        assert body["max_tokens"] == 10


async def test_server_error_is_retryable() -> None:
    async with FakeUpstream(["x"], mode="fail").running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        try:
            with pytest.raises(BackendError) as info:
                await backend.generate(request(), lambda _: None)
        finally:
            await backend.aclose()
        assert info.value.retryable and "500" in str(info.value)


async def test_client_error_is_final() -> None:
    async with FakeUpstream(["x"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}/nowhere", model="m")
        try:
            with pytest.raises(BackendError) as info:
                await backend.generate(request(), lambda _: None)
        finally:
            await backend.aclose()
        assert not info.value.retryable and "404" in str(info.value)


async def test_cut_stream_is_an_error_not_a_short_answer() -> None:
    words = ["one ", "two ", "three ", "four "]
    async with FakeUpstream(words, mode="cut").running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        got: list[str] = []
        try:
            with pytest.raises(BackendError) as info:
                await backend.generate(request(), got.extend)
        finally:
            await backend.aclose()
        assert info.value.retryable
        assert got == ["one ", "two "]  # what arrived was passed on; the caller learns it is incomplete


async def test_unreachable_and_slow_servers_are_retryable_errors() -> None:
    backend = OpenAIBackend(upstream="http://127.0.0.1:9", model="m", connect_timeout_s=1)
    try:
        with pytest.raises(BackendError) as info:
            await backend.generate(request(), lambda _: None)
    finally:
        await backend.aclose()
    assert info.value.retryable
    async with FakeUpstream(["late"], first_delay_s=3600).running() as up:  # far past the read timeout
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m", read_timeout_s=0.2)
        try:
            with pytest.raises(BackendError) as info:
                await backend.generate(request(), lambda _: None)
        finally:
            await backend.aclose()
        assert info.value.retryable and "timed out" in str(info.value)


async def test_no_room_left_asks_nothing() -> None:
    async with FakeUpstream(["x"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        try:
            assert await backend.generate(request(max_tokens=0), lambda _: None) == "length"
        finally:
            await backend.aclose()
        assert up.requests == []


async def test_httpcore_detects_the_event_loop_through_sniffio() -> None:
    # httpcore imports sniffio on every request to learn which event loop runs it; when the import
    # fails it walks sys.path again each time. sniffio is a declared dependency so that it is found.
    import sniffio

    assert sniffio.current_async_library() == "asyncio"
    async with FakeUpstream(["a"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        try:
            assert await backend.generate(request(), lambda _: None) == "stop"
        finally:
            await backend.aclose()
    assert sys.modules.get("sniffio") is sniffio


async def test_sequential_answers_reuse_one_connection() -> None:
    # Reading each answer to the end of its body hands the connection back to the pool; leaving after
    # [DONE] but before the body's end would close it and open a new one for the next request.
    async with FakeUpstream(["a", "b"]).running() as up:
        backend = OpenAIBackend(upstream=f"http://127.0.0.1:{up.port}", model="m")
        try:
            for _ in range(10):
                assert await backend.generate(request(), lambda _: None) == "stop"
        finally:
            await backend.aclose()
        assert len(up.requests) == 10
        assert up.connections <= 2, up.connections
