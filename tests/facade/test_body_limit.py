"""Request bodies past the limit are refused with 413 before they cost anyone else anything: never read
whole, never parsed, never sent on the facade's shared stream to the core (where the core's refusal
of an oversized message would end the stream for every bystander's send)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from ashao.v1 import chat_pb2
from facade.sends import MAX_BATCH_BYTES, _Outbox
from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.timeout(60)

LIMIT = 1 << 20
BIG = 20 * 1024 * 1024


def oversized_send() -> bytes:
    return orjson.dumps({"tier": "free", "content": "x" * BIG})


async def chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """``total`` bytes of a JSON string body, in ``size`` pieces (sent chunked: no length is known)."""
    yield b'{"tier": "free", "content": "'
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece
    yield b'"}'


async def test_an_oversized_send_is_413_and_concurrent_sends_all_succeed(stack: Stack) -> None:
    http = stack.http
    big = asyncio.create_task(
        http.post("/api/chat/send", content=oversized_send(), headers={"content-type": "application/json"})
    )
    bystanders: list[httpx.Response] = []
    for round_ in range(40):  # bystanders keep sending for as long as the big body is on its way
        wave = await asyncio.gather(
            *(
                http.post("/api/chat/send", json={"tier": "free", "content": f"hi {round_}.{i}"})
                for i in range(5)
            )
        )
        bystanders.extend(wave)
        if big.done():
            break
    r = await big
    assert r.status_code == 413, r.text
    assert r.json() == {"error": f"body: too large (the limit is {LIMIT} bytes)"}
    assert [b.status_code for b in bystanders if b.status_code != 200] == []
    ok = await http.post("/api/chat/send", json={"tier": "free", "content": "after"})
    assert ok.status_code == 200, ok.text


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.facade.port)
    try:
        writer.write(
            b"POST /api/chat/send HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % BIG
        )
        await writer.drain()
        # Not a byte of the body sent: the answer comes anyway, and the connection is closed after it.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 413 "), head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        assert orjson.loads(body)["error"].startswith("body: too large")
    finally:
        writer.close()


async def test_a_chunked_body_is_counted_and_refused_once_past_the_limit(stack: Stack) -> None:
    r = await stack.http.post(
        "/api/chat/send", content=chunks(BIG), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"].startswith("body: too large"), r.text
    r = await stack.http.post(  # a chunked body within the limit is read as any other
        "/api/chat/send", content=chunks(1000), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and r.json()["jobId"].startswith("job_"), r.text


async def test_the_relay_answers_its_413_envelope(stack: Stack) -> None:
    body = orjson.dumps({"message": "x" * BIG, "max_tokens": 1024})
    for path in ("/chat", "/chat/stream"):
        r = await stack.http.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413, (path, r.text)
        assert r.json() == {
            "error": "payload_too_large",
            "detail": f"the request body is larger than the limit of {LIMIT} bytes",
            "limit_bytes": LIMIT,
        }
    r = await stack.http.post("/chat", content=chunks(BIG), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


async def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, max_body_bytes=100)
    try:
        r = await s.http.post("/api/chat/send", json={"tier": "free", "content": "x" * 100})
        assert r.status_code == 413 and r.json() == {"error": "body: too large (the limit is 100 bytes)"}
        r = await s.http.post("/api/chat/send", json={"tier": "free", "content": "fits"})
        assert r.status_code == 200, r.text
    finally:
        await stop_stack(s)


async def test_content_the_core_would_refuse_never_reaches_the_shared_stream(tmp_path: Path) -> None:
    # The core takes 32,000 characters; a facade set to 10 refuses the 11th itself, naming the field.
    s = await start_stack(tmp_path, max_content_chars=10)
    try:
        r = await s.http.post("/api/chat/send", json={"tier": "free", "content": "x" * 11})
        assert (r.status_code, r.json()) == (400, {"error": "content: longer than 10 characters"})
        r = await s.http.post("/api/chat/send", json={"tier": "free", "content": "x" * 10})
        assert r.status_code == 200, r.text
    finally:
        await stop_stack(s)


async def test_sends_queued_together_are_split_into_messages_the_core_accepts() -> None:
    outbox = _Outbox()
    content = "y" * 200_000
    for i in range(60):  # 12 MB queued at once
        outbox.put(
            chat_pb2.RelayedSend(id=i + 1, send=chat_pb2.SendMessageRequest(tier="free", content=content))
        )
    seen: list[int] = []
    requests = outbox.requests()
    async with asyncio.timeout(10):
        while len(seen) < 60:
            request = await anext(requests)
            assert 0 < request.ByteSize() <= MAX_BATCH_BYTES
            seen.extend(s.id for s in request.sends)
    assert seen == list(range(1, 61))  # in order, each once
    outbox.close()


async def test_a_send_too_large_for_the_stream_is_refused_even_under_a_raised_body_limit(
    tmp_path: Path,
) -> None:
    s = await start_stack(tmp_path, max_body_bytes=64 * 1024 * 1024)  # an operator's (unwise) choice
    try:
        body = orjson.dumps({"tier": "free", "content": "x", "conversationId": "conv_" + "x" * BIG})
        big = asyncio.create_task(
            s.http.post("/api/chat/send", content=body, headers={"content-type": "application/json"})
        )
        bystanders = await asyncio.gather(
            *(s.http.post("/api/chat/send", json={"tier": "free", "content": f"b{i}"}) for i in range(20))
        )
        r = await big
        assert r.status_code == 400 and r.json()["error"].startswith("body: too large to relay"), r.text
        assert [b.status_code for b in bystanders] == [200] * 20
        after = await s.http.post("/api/chat/send", json={"tier": "free", "content": "after"})
        assert after.status_code == 200, after.text
    finally:
        await stop_stack(s)
