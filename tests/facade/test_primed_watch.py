"""The watch a facade opens as it answers a send, for the stream its sender opens next."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.facade.test_stream import send, tokens_of
from tests.helpers.core import connect_worker
from tests.helpers.sse import read_sse
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


async def test_the_senders_stream_takes_over_the_watch_opened_with_the_send(stack: Stack) -> None:
    client = stack.facade.core_client
    worker = await connect_worker(stack.core)
    job = await send(stack.http)
    assert len(client.primer) == 1
    await worker.assignment()
    await worker.tokens(job, ["a ", "b "])
    await worker.complete(job)
    status, events = await read_sse(stack.http, f"/api/chat/stream?jobId={job}")
    assert status == 200
    assert tokens_of(events) == ["a ", "b "]
    assert events[-1]["data"] == {"type": "done", "tokens": 2}
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert client.primer.claimed == 1 and len(client.primer) == 0
    await eventually(lambda: len(client.mux) == 0)


async def test_a_resumed_stream_watches_afresh(stack: Stack) -> None:
    client = stack.facade.core_client
    worker = await connect_worker(stack.core)
    job = await send(stack.http)
    await worker.assignment()
    await worker.tokens(job, ["a ", "b "])
    await worker.complete(job)
    status, events = await read_sse(stack.http, f"/api/chat/stream?jobId={job}&lastEventId=1")
    assert status == 200 and tokens_of(events) == ["b "]
    assert client.primer.claimed == 0  # the primed watch starts at the beginning: released instead
    await eventually(lambda: len(client.mux) == 0)


async def test_another_caller_does_not_take_over_a_primed_watch(stack: Stack) -> None:
    client = stack.facade.core_client
    job = await send(stack.http)
    primer = client.primer
    primer.close()  # (the send's own)
    primer.prime(job, credential="someone-else", client_ip="192.0.2.7")
    assert len(client.mux) == 1
    assert primer.claim(job, 0, credential="", client_ip="127.0.0.1") is None
    assert primer.claimed == 0 and len(primer) == 0
    assert len(client.mux) == 0  # released


async def test_an_unclaimed_watch_is_released_after_its_hold(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, sse_prime_s=0.2)
    try:
        client = s.facade.core_client
        await send(s.http)
        await send(s.http, "again")
        assert len(client.primer) == 2
        await eventually(lambda: client.primer.expired == 2 and len(client.mux) == 0)
        assert len(client.primer) == 0
    finally:
        await stop_stack(s)


async def test_priming_can_be_turned_off(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, sse_prime_s=0)
    try:
        await send(s.http)
        assert len(s.facade.core_client.primer) == 0 and len(s.facade.core_client.mux) == 0
    finally:
        await stop_stack(s)


async def test_a_caller_that_did_not_stream_is_primed_again_once_it_streams(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, sse_prime_s=0.2)
    try:
        client = s.facade.core_client
        worker = await connect_worker(s.core)
        first = await send(s.http)
        await eventually(lambda: client.primer.expired == 1)
        await send(s.http, "not streamed either")  # its last primed watch went unclaimed: none now
        assert len(client.primer) == 0
        await worker.assignment()
        await worker.tokens(first, ["a"])
        await worker.complete(first)
        status, events = await read_sse(s.http, f"/api/chat/stream?jobId={first}")
        assert status == 200 and tokens_of(events) == ["a"]
        await send(s.http, "streamed")  # it streams: primed again
        assert len(client.primer) == 1
    finally:
        await stop_stack(s)


async def test_a_primed_watch_past_its_buffer_bound_gives_way_to_a_fresh_one(stack: Stack) -> None:
    client = stack.facade.core_client
    worker = await connect_worker(stack.core)
    job = await send(stack.http)
    await worker.assignment()
    big = ["x" * 1000] * 100  # ~100 KB of events, past what a primed watch holds
    await worker.tokens(job, big)
    await worker.complete(job)
    await eventually(lambda: len(client.mux) == 0)  # the primed watch was dropped
    status, events = await read_sse(stack.http, f"/api/chat/stream?jobId={job}")
    assert status == 200 and tokens_of(events) == big  # all of it, from the core's log
    assert events[-1]["data"] == {"type": "done", "tokens": 100}
    assert client.primer.claimed == 0 and client.mux.cut_off == 0  # (no slow client was cut off)
