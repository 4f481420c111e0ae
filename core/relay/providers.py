"""Providers: something that turns messages into a stream of text. Hosted providers are
OpenAI-compatible HTTP upstreams (here); the floor is the network's own workers (core/relay/floor.py).
The cascade that tries them in order is core/relay/cascade.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
import orjson

from core.config import CoreSettings

log = logging.getLogger("ashao.core.providers")


class ProviderError(Exception):
    """A provider could not serve (before or during the stream)."""


@dataclass(slots=True)
class Usage:
    """Token counts of one response."""

    input_tokens: int = 0
    output_tokens: int = 0


class Provider(Protocol):
    """Something that streams a completion."""

    name: str
    model_id: str
    is_floor: bool

    def healthy(self) -> bool:
        """Whether it can take a request now (beyond its breaker)."""
        ...

    def stream(self, messages: list[dict[str, str]], max_tokens: int, usage: Usage) -> AsyncIterator[str]:
        """Text pieces as produced; fills ``usage``; raises ProviderError."""
        ...


class HostedProvider:
    """An OpenAI-compatible streaming upstream (``/v1/chat/completions``)."""

    is_floor = False

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key: str = "",
        first_chunk_timeout_s: float = 10.0,
        total_timeout_s: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.model_id = model
        base = base_url.rstrip("/")
        self._url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._first = first_chunk_timeout_s
        self._total = total_timeout_s
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(total_timeout_s, connect=5.0))

    def healthy(self) -> bool:
        """Hosted providers are judged by their breaker alone."""
        return True

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        """Stream the completion; a missing ``[DONE]``/finish is an error, not a short answer."""
        body = {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        deadline = time.monotonic() + self._total
        finished = False
        try:
            async with self._client.stream("POST", self._url, json=body, headers=self._headers) as r:
                if r.status_code != 200:
                    raise ProviderError(f"{self.name}: upstream answered {r.status_code}")
                lines = r.aiter_lines()
                first = True
                while True:
                    timeout = self._first if first else max(0.1, deadline - time.monotonic())
                    try:
                        line = await asyncio.wait_for(anext(lines), timeout)
                    except StopAsyncIteration:
                        break
                    except TimeoutError as exc:
                        raise ProviderError(f"{self.name}: no data within {timeout:.1f} s") from exc
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise ProviderError(f"{self.name}: malformed chunk") from exc
                    if chunk.get("usage"):
                        usage.input_tokens = int(chunk["usage"].get("prompt_tokens", 0))
                        usage.output_tokens = int(chunk["usage"].get("completion_tokens", 0))
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            first = False
                            yield text
                        if choice.get("finish_reason"):
                            finished = True
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name}: {type(exc).__name__}") from exc
        if not finished:
            raise ProviderError(f"{self.name}: the stream was cut before it finished")


async def close_stream(it: AsyncIterator[str]) -> None:
    """Close a provider's stream early (stops its upstream request or job); errors closing are moot."""
    aclose: Callable[[], Awaitable[None]] | None = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing a provider stream failed", exc_info=True)


def hosted_providers(settings: CoreSettings) -> list[Provider]:
    """The hosted providers configured in ``settings.relay_providers`` (JSON), in order."""
    try:
        specs = orjson.loads(settings.relay_providers or "[]")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"ASHAO_RELAY_PROVIDERS is not JSON: {exc}") from exc
    out: list[Provider] = []
    for spec in specs:
        out.append(
            HostedProvider(
                name=spec["name"],
                base_url=spec["base_url"],
                model=spec["model"],
                api_key=os.environ.get(spec.get("api_key_env", ""), "") if spec.get("api_key_env") else "",
                first_chunk_timeout_s=float(spec.get("first_chunk_timeout_s", 10.0)),
                total_timeout_s=float(spec.get("total_timeout_s", 120.0)),
            )
        )
    return out
