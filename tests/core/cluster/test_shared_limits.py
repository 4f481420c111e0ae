"""Rate limits several cores share in Redis: a caller cannot multiply its limit by the number of cores
it spreads its requests over; while Redis is unreachable each core limits on its own."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest

from core.cluster.limits import SharedRateLimiter
from core.errors import RateLimitedError
from tests.core.cluster.conftest import StartCores
from tests.helpers.bus import require_redis
from tests.helpers.net import free_port

pytestmark = pytest.mark.timeout(60)


async def test_a_burst_spread_over_two_cores_is_held_to_one_limit(cores: StartCores) -> None:
    url = await require_redis()
    a, b = await cores(2, limits=url, send_rate_per_ip=0.01, send_burst_per_ip=10)

    async def send(i: int) -> str:
        try:
            await (a, b)[i % 2].send(f"m{i}")
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "OK"

    outcomes = [await send(i) for i in range(30)]
    assert outcomes.count("OK") == 10  # the burst, once, across both cores
    assert outcomes.count("RESOURCE_EXHAUSTED") == 20


async def test_limits_hold_per_core_while_redis_is_unreachable() -> None:
    limiter = SharedRateLimiter.connect(
        f"redis://127.0.0.1:{free_port()}/0",
        name=f"t{secrets.token_hex(4)}",
        per_principal=(0.01, 3),
        per_ip=(0.01, 3),
        timeout_s=0.2,
    )
    try:
        for _ in range(3):
            await limiter.admit("user:a", "10.0.0.1")
        with pytest.raises(RateLimitedError) as info:
            await limiter.admit("user:a", "10.0.0.1")
        assert info.value.retry_after_s > 0
        await limiter.admit("user:b", "10.0.0.2")  # others are not refused because Redis is down
        assert (limiter.admitted, limiter.refused) == (4, 1)
    finally:
        await limiter.aclose()


async def test_the_shared_limit_refuses_past_the_burst_and_says_when_to_retry() -> None:
    url = await require_redis()
    name = f"t{secrets.token_hex(4)}"
    limiters = [
        SharedRateLimiter.connect(url, name=name, per_principal=(0.01, 4), per_ip=(100, 100))
        for _ in range(2)
    ]
    try:
        outcomes = []
        for i in range(8):
            try:
                await limiters[i % 2].admit("user:a", f"10.0.0.{i}")
                outcomes.append("ok")
            except RateLimitedError as exc:
                assert 0 < exc.retry_after_s <= 100
                outcomes.append("refused")
        assert outcomes == ["ok"] * 4 + ["refused"] * 4
        await asyncio.gather(*(limiter.admit("user:b", "10.1.0.1") for limiter in limiters))
    finally:
        for limiter in limiters:
            await limiter.aclose()
