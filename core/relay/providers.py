"""Providers: something that turns messages into a stream of text. Hosted providers are
OpenAI-compatible HTTP upstreams (here); the floor is the network's own workers (core/relay/floor.py).
The cascade that tries them in order is core/relay/cascade.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import orjson

from core.config import ProviderSpec

log = logging.getLogger("ashao.core.providers")

DONE_TAIL_S = 2.0
"""After ``[DONE]``, how long a hosted stream is read on for the end of its body (so that its connection
goes back to the pool)."""


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
        max_connections: int = 100,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``max_connections`` bounds the pool: streams beyond it wait for a connection, within their
        first-chunk deadline."""
        self.name = name
        self.model_id = model
        base = base_url.rstrip("/")
        self._url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._first = first_chunk_timeout_s
        self._total = total_timeout_s
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(total_timeout_s, connect=5.0, pool=first_chunk_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total
        # The first chunk's deadline runs from asking for a connection: a full pool, a server slow to
        # answer and a slow first token all count, so the cascade moves on instead of waiting.
        first_deadline = min(deadline, loop.time() + self._first)
        first = True
        finished = done = False
        request = self._client.build_request("POST", self._url, json=body, headers=self._headers)
        try:
            try:
                async with asyncio.timeout_at(first_deadline):
                    r = await self._client.send(request, stream=True)
            except TimeoutError as exc:
                raise ProviderError(f"{self.name}: no first chunk within {self._first:.1f} s") from exc
            try:
                if r.status_code != 200:
                    raise ProviderError(f"{self.name}: upstream answered {r.status_code}")
                lines = r.aiter_lines()
                while True:
                    try:
                        async with asyncio.timeout_at(first_deadline if first else deadline):
                            line = await anext(lines)
                    except StopAsyncIteration:
                        break
                    except TimeoutError as exc:
                        if done:
                            break  # the answer is whole; only the end of its body was slow
                        if first:
                            raise ProviderError(
                                f"{self.name}: no first chunk within {self._first:.1f} s"
                            ) from exc
                        raise ProviderError(
                            f"{self.name}: the answer took longer than {self._total:.1f} s"
                        ) from exc
                    if done or not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        # Read on to the end of the body (briefly): a response left unread closes its
                        # connection instead of handing it back to the pool.
                        finished = done = True
                        deadline = first_deadline = min(deadline, loop.time() + DONE_TAIL_S)
                        continue
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
            finally:
                await r.aclose()
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


def hosted_providers(specs: Sequence[ProviderSpec]) -> list[Provider]:
    """The hosted providers of ``specs`` (``CoreSettings.relay_providers``, validated), in order; each
    key is read from its environment variable now, at start-up."""
    return [
        HostedProvider(
            name=spec.name,
            base_url=str(spec.base_url),
            model=spec.model,
            api_key=os.environ.get(spec.api_key_env, "") if spec.api_key_env else "",
            first_chunk_timeout_s=spec.first_chunk_timeout_s,
            total_timeout_s=spec.total_timeout_s,
            max_connections=spec.max_connections,
        )
        for spec in specs
    ]
