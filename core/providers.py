"""The provider cascade: providers tried in order, each behind a circuit breaker.

A provider turns messages into a stream of text. Hosted providers are OpenAI-compatible HTTP
upstreams; the floor is the network's own workers serving open-weights models. The cascade commits
to the first provider that produces a first chunk before its deadline; a failure before that moves
on to the next provider, a failure after it is reported to the caller (the text so far cannot be
unsaid). A breaker opens after ``threshold`` consecutive failures (timeouts count) and stays open
for ``cooldown_s``; then one probe request decides whether it closes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import orjson

from core.auth import Principal
from core.config import ProviderSpec
from core.coordinator import Coordinator
from core.fanout import Follower

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


class CircuitBreaker:
    """Consecutive failures open it; after the cooldown one probe may close it."""

    def __init__(self, *, threshold: int = 3, cooldown_s: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        """ "closed", "open" or "half_open"."""
        if self.failures < self.threshold:
            return "closed"
        return "half_open" if time.monotonic() - self.opened_at >= self.cooldown_s else "open"

    def allow(self) -> bool:
        """Whether a request may go to the provider now (a half-open breaker lets one probe through)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Close."""
        self.failures = 0
        self._probing = False

    def failure(self) -> None:
        """Count a failure; open (again) at the threshold."""
        self._probing = False
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


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


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """A provider's health as reported."""

    name: str
    model_id: str
    is_floor: bool
    breaker: str
    healthy: bool


class Cascade:
    """Providers in order, each with its breaker."""

    def __init__(self, providers: list[Provider], *, threshold: int = 3, cooldown_s: float = 30.0) -> None:
        self.providers = providers
        self.breakers = {
            p.name: CircuitBreaker(threshold=threshold, cooldown_s=cooldown_s) for p in providers
        }
        self.served: dict[str, int] = {p.name: 0 for p in providers}
        self.failed: dict[str, int] = {p.name: 0 for p in providers}

    async def aclose(self) -> None:
        """Release the providers' connections."""
        for p in self.providers:
            aclose: Callable[[], Awaitable[None]] | None = getattr(p, "aclose", None)
            if aclose is not None:
                await aclose()

    def floor(self) -> Provider | None:
        """The open-weights floor, if configured."""
        return next((p for p in self.providers if p.is_floor), None)

    def floor_healthy(self) -> bool:
        """Whether the floor can serve now."""
        f = self.floor()
        return f is not None and f.healthy() and self.breakers[f.name].state != "open"

    def status(self) -> list[ProviderStatus]:
        """Every provider's health."""
        return [
            ProviderStatus(
                p.name,
                p.model_id,
                p.is_floor,
                self.breakers[p.name].state,
                p.healthy() and self.breakers[p.name].state != "open",
            )
            for p in self.providers
        ]

    async def open(
        self, messages: list[dict[str, str]], max_tokens: int
    ) -> tuple[Provider, str, AsyncIterator[str], Usage]:
        """The first provider that yields a first chunk: (provider, first chunk, the rest, usage)."""
        errors = []
        for p in self.providers:
            breaker = self.breakers[p.name]
            if not p.healthy() or not breaker.allow():
                errors.append(f"{p.name}: unavailable")
                continue
            usage = Usage()
            it = p.stream(messages, max_tokens, usage)
            try:
                first = await anext(it)
            except (ProviderError, StopAsyncIteration) as exc:
                breaker.failure()
                self.failed[p.name] += 1
                errors.append(str(exc) or f"{p.name}: empty answer")
                await close_stream(it)
                continue
            return p, first, self._watch(p, it), usage
        raise ProviderError("; ".join(errors) or "no provider configured")

    async def _watch(self, p: Provider, it: AsyncIterator[str]) -> AsyncIterator[str]:
        breaker = self.breakers[p.name]
        try:
            async for piece in it:
                yield piece
        except ProviderError:
            breaker.failure()
            self.failed[p.name] += 1
            raise
        breaker.success()
        self.served[p.name] += 1


async def close_stream(it: AsyncIterator[str]) -> None:
    """Close a provider's stream early (stops its upstream request or job); errors closing are moot."""
    aclose: Callable[[], Awaitable[None]] | None = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.debug("closing a provider stream failed", exc_info=True)


class NetworkProvider:
    """The floor: the network's own workers serving open-weights models, through the job queue."""

    is_floor = True

    def __init__(
        self,
        *,
        coordinator: Coordinator,
        tier: str,
        model_id: str,
        first_chunk_timeout_s: float = 30.0,
        total_timeout_s: float = 300.0,
    ) -> None:
        self.name = "network"
        self.model_id = model_id
        self._c = coordinator
        self._tier = tier
        self._first = first_chunk_timeout_s
        self._total = total_timeout_s

    def healthy(self) -> bool:
        """A live worker serving the floor's tier holds a stream."""
        return self._c.serving(self._tier)

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        """Run the conversation as a job; relay its tokens."""
        content = messages[-1]["content"]
        job_id, _ = await self._c.send(tier=self._tier, content=content, conversation_id="", principal=RELAY)
        job_log, _ = await self._c.open_log(job_id, RELAY)
        follower = Follower(job_log, 0, max_tokens_per_message=4096)
        deadline = time.monotonic() + self._total
        first = True
        ended = False
        try:
            while True:
                timeout = self._first if first else max(0.1, deadline - time.monotonic())
                try:
                    events = await asyncio.wait_for(follower.next(), timeout)
                except TimeoutError as exc:
                    raise ProviderError(f"network: no tokens within {timeout:.0f} s") from exc
                if events is None:
                    ended = True
                    return
                for token in events.tokens:
                    first = False
                    usage.output_tokens += 1
                    yield token
                t = events.terminal
                if t is not None:
                    ended = True
                    if t.kind != "done":
                        raise ProviderError(f"network: {t.message}")
                    usage.input_tokens = sum(len(m["content"]) for m in messages) // 4 + 1
                    return
        finally:
            follower.close()
            if not ended:  # the caller left (or timed out): do not keep a worker generating for nobody
                self._c.cancel(job_id, "the relay caller left")


RELAY = Principal("service", ip="relay")
"""The principal the relay acts as when it sends work to the network."""


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
