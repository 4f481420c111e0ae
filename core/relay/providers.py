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

import orjson

from core.config import ProviderSpec
from core.relay.upstream_http import UpstreamHTTPError, UpstreamPool

log = logging.getLogger("ashao.core.providers")

DONE_TAIL_S = 2.0
"""After ``[DONE]``, how long a hosted stream is read on for the end of its body (so that its connection
goes back to the pool)."""


MAX_LINE_BYTES = 1 << 20
"""The longest line of an upstream's event stream kept while waiting for its end."""


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
        self._pool = UpstreamPool(self._url, max_connections=max_connections, headers=self._headers)

    def healthy(self) -> bool:
        """Hosted providers are judged by their breaker alone."""
        return True

    async def aclose(self) -> None:
        """Close the kept connections."""
        await self._pool.aclose()

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
        try:
            try:
                async with asyncio.timeout_at(first_deadline):
                    r = await self._pool.post(orjson.dumps(body))
            except TimeoutError as exc:
                raise ProviderError(f"{self.name}: no first chunk within {self._first:.1f} s") from exc
            try:
                if r.status_code != 200:
                    raise ProviderError(f"{self.name}: upstream answered {r.status_code}")
                reads = r.body()
                tail = b""
                while True:
                    # One deadline per read of the socket, not per line: a read often holds many.
                    try:
                        async with asyncio.timeout_at(first_deadline if first else deadline):
                            data = await anext(reads)
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
                    if done:
                        continue
                    lines = (tail + data).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == b"[DONE]":
                            # Read on to the end of the body (briefly): a response left unread closes
                            # its connection instead of handing it back to the pool.
                            finished = done = True
                            deadline = first_deadline = min(deadline, loop.time() + DONE_TAIL_S)
                            break
                        try:
                            chunk = orjson.loads(payload)
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
                    if len(tail) > MAX_LINE_BYTES:
                        raise ProviderError(f"{self.name}: a line longer than {MAX_LINE_BYTES} bytes")
            finally:
                await r.aclose()
        except (
            OSError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            UpstreamHTTPError,
        ) as exc:
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
