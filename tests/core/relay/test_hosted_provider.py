"""A hosted provider against a real streaming HTTP server on loopback: connections are reused, and the
first-chunk deadline covers the wait for a connection from the pool."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from core.relay.providers import HostedProvider, ProviderError, Usage
from tests.helpers.upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "user", "content": "hi"}]


async def test_sequential_streams_reuse_one_connection() -> None:
    # Reading each answer to the end of its body hands the connection back to the pool; leaving at
    # [DONE], before the body's end, would close it and open a new one for the next request.
    async with FakeUpstream(["a", "b"]).running() as up:
        provider = HostedProvider(name="p", base_url=f"http://127.0.0.1:{up.port}/v1", model="m")
        try:
            for _ in range(10):
                assert [t async for t in provider.stream(MESSAGES, 16, Usage())] == ["a", "b"]
        finally:
            await provider.aclose()
        assert len(up.requests) == 10
        assert up.connections <= 2, up.connections


async def test_the_first_chunk_deadline_covers_the_wait_for_a_pooled_connection() -> None:
    # One connection, held by a long answer: a second stream must give up within its first-chunk
    # deadline (so the cascade moves on), not queue for the pool until the whole answer's deadline.
    async with FakeUpstream([f"w{i} " for i in range(2000)], delay_s=0.02).running() as up:
        provider = HostedProvider(
            name="p",
            base_url=f"http://127.0.0.1:{up.port}",
            model="m",
            first_chunk_timeout_s=0.5,
            total_timeout_s=120.0,
            max_connections=1,
        )
        holding = provider.stream(MESSAGES, 4096, Usage())
        try:
            assert await anext(holding) == "w0 "
            waiting = provider.stream(MESSAGES, 16, Usage())
            with pytest.raises(ProviderError, match=r"^p: "):
                await asyncio.wait_for(anext(waiting), 10)  # a bound for the test, not a measured duration
            await waiting.aclose()
            assert len(up.requests) == 1
            assert await anext(holding) == "w1 "  # the first stream goes on unharmed
        finally:
            with contextlib.suppress(ProviderError):
                await holding.aclose()
            await provider.aclose()


async def test_the_first_chunk_deadline_covers_a_slow_status_line() -> None:
    # A server that queues the request before answering at all counts against the first chunk too.
    async with FakeUpstream(["late"], headers_delay_s=30).running() as up:
        provider = HostedProvider(
            name="p", base_url=f"http://127.0.0.1:{up.port}", model="m", first_chunk_timeout_s=0.5
        )
        try:
            with pytest.raises(ProviderError, match=r"^p: no first chunk within 0.5 s"):
                await asyncio.wait_for(anext(provider.stream(MESSAGES, 16, Usage())), 10)
        finally:
            await provider.aclose()
