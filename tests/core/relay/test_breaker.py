"""Circuit breakers and the cascade: every state, and probes that end without a verdict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.relay.breaker import CircuitBreaker
from core.relay.cascade import Cascade
from core.relay.providers import ProviderError, Usage

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_closed_open_half_open_and_back() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=2, cooldown_s=10, clock=clock)
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow() and not b.available
    clock.now += 10
    assert b.state == "half_open" and b.available
    assert b.allow()  # the probe
    assert not b.allow() and not b.available  # one probe at a time
    b.failure()  # the probe failed: open for another cooldown
    assert b.state == "open"
    clock.now += 10
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


def test_a_probe_released_without_verdict_lets_the_next_request_probe() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown_s=5, clock=clock)
    b.failure()
    clock.now += 5
    assert b.allow()
    b.release()
    assert b.state == "half_open" and b.available and b.allow()


class Scripted:
    """A provider whose answers the test controls: "ok", "fail", or "hang" (waits until cancelled)."""

    is_floor = False

    def __init__(self, name: str, script: list[str]) -> None:
        self.name = name
        self.model_id = name
        self.script = script
        self.started = asyncio.Event()

    def healthy(self) -> bool:
        return True

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        mode = self.script.pop(0)
        self.started.set()
        if mode == "fail":
            raise ProviderError(f"{self.name}: down")
        if mode == "hang":
            await asyncio.Event().wait()
        yield "first"
        yield "second"


async def _open_and_drain(cascade: Cascade) -> str:
    provider, _first, rest, _ = await cascade.open([{"role": "user", "content": "hi"}], 16)
    async for _ in rest:
        pass
    return provider.name


async def test_a_probe_abandoned_while_waiting_for_the_first_chunk_is_released() -> None:
    p = Scripted("hosted", ["fail", "hang", "ok"])
    cascade = Cascade([p], threshold=1, cooldown_s=0)
    with pytest.raises(ProviderError):
        await cascade.open([{"role": "user", "content": "hi"}], 16)
    assert cascade.breakers["hosted"].state == "half_open"
    p.started.clear()
    caller = asyncio.create_task(cascade.open([{"role": "user", "content": "hi"}], 16))
    await p.started.wait()  # the probe is in flight
    assert not cascade.breakers["hosted"].available
    caller.cancel()  # the caller leaves before the first chunk
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cascade.breakers["hosted"].available  # the next request may probe
    assert await _open_and_drain(cascade) == "hosted"
    assert cascade.breakers["hosted"].state == "closed"


async def test_a_probe_stream_closed_early_is_released_and_the_floor_stays_usable() -> None:
    p = Scripted("floor", ["fail", "ok", "ok"])
    p.is_floor = True
    cascade = Cascade([p], threshold=1, cooldown_s=0)
    with pytest.raises(ProviderError):
        await cascade.open([{"role": "user", "content": "hi"}], 16)
    _, first, rest, _ = await cascade.open([{"role": "user", "content": "hi"}], 16)
    assert first == "first" and not cascade.floor_healthy()  # the probe holds the slot
    await rest.aclose()  # the caller stops reading after the first chunk
    assert cascade.floor_healthy()
    assert await _open_and_drain(cascade) == "floor"
