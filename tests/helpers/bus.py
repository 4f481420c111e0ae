"""NATS (JetStream on) and Redis for the tests of several cores: probed once per session, or a skip.

The servers are ``ASHAO_TEST_NATS_URL`` and ``ASHAO_TEST_REDIS_URL``, else the local defaults. Each
test gets a cluster name of its own (so runs on one machine never share a queue), and its stream is
deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
import redis.asyncio as redis
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from redis.exceptions import RedisError

NATS_ENV = "ASHAO_TEST_NATS_URL"
REDIS_ENV = "ASHAO_TEST_REDIS_URL"

_probed: dict[str, str | None] = {}  # url -> why it cannot be used


def nats_url() -> str:
    return os.environ.get(NATS_ENV) or "nats://127.0.0.1:4222"


def redis_url() -> str:
    return os.environ.get(REDIS_ENV) or "redis://127.0.0.1:6379/0"


async def require_nats() -> str:
    """The NATS URL, or skip the calling test (JetStream must be on)."""
    url = nats_url()
    if url not in _probed:
        why: str | None = None
        try:
            nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
            try:
                await nc.jetstream(timeout=2).account_info()
            finally:
                await nc.close()
        except (OSError, TimeoutError, NatsError) as exc:
            why = f"NATS with JetStream not reachable at {url} ({exc or type(exc).__name__}); set {NATS_ENV}"
        _probed[url] = why
    if (why := _probed[url]) is not None:
        pytest.skip(why)
    return url


async def require_redis() -> str:
    """The Redis URL, or skip the calling test."""
    url = redis_url()
    if url not in _probed:
        why: str | None = None
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            why = f"Redis not reachable at {url} ({exc}); set {REDIS_ENV}"
        finally:
            await client.aclose()
        _probed[url] = why
    if (why := _probed[url]) is not None:
        pytest.skip(why)
    return url


@asynccontextmanager
async def cluster_name(url: str) -> AsyncIterator[str]:
    """A fresh cluster name; its JetStream stream is deleted on exit."""
    name = f"t{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
        try:
            with contextlib.suppress(NotFoundError):
                await nc.jetstream().delete_stream(f"{name.upper()}_JOBS")
        finally:
            await nc.close()
