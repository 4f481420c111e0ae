"""The official OpenAI SDKs pointed at a facade, as an app developer points them."""

from __future__ import annotations

import math

import httpx
import openai


def base_url(facade_url: str) -> str:
    """What an SDK's ``base_url`` is set to."""
    return f"{facade_url}/v1"


def sync_client(facade_url: str, api_key: str, *, max_retries: int = 0) -> openai.OpenAI:
    """A sync client (call it from a thread: the stack runs in the test's event loop)."""
    return openai.OpenAI(base_url=base_url(facade_url), api_key=api_key, max_retries=max_retries, timeout=30)


def async_client(facade_url: str, api_key: str, *, max_retries: int = 0) -> openai.AsyncOpenAI:
    """An async client."""
    return openai.AsyncOpenAI(
        base_url=base_url(facade_url), api_key=api_key, max_retries=max_retries, timeout=30
    )


async def api_key(http: httpx.AsyncClient, session_token: str) -> str:
    """A new API key of the user signed in with ``session_token``."""
    r = await http.post(
        "/api/keys", json={"name": "sdk"}, headers={"Authorization": f"Bearer {session_token}"}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["secret"])


def synthetic(n: int, start: int = 0) -> str:
    """The text of the synthetic backend's answer of ``n`` tokens."""
    return "".join(f"tok{i} " for i in range(start, start + n))


def prompt_estimate(*texts: str) -> int:
    """The documented estimate of a prompt of these messages: ⌈characters / 4⌉ + 4 per message."""
    return sum(math.ceil(len(t) / 4) + 4 for t in texts)
