"""The relay pipeline: auth → rate limit → billing gate → ingress moderation → provider cascade →
egress moderation → safety ledger → signed envelope.

Everything that can refuse a request is decided in ``admit()`` and ``Cascade.open()`` — before a
streaming caller is told it was admitted — so refusals are real statuses with their envelopes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from core.errors import NoFloorError, ProviderFailedError, RateLimitedError, RefusedError
from core.identity.principal import Principal
from core.identity.ratelimit import Limiter
from core.money.ledger import Move
from core.money.pricing import PriceBoard
from core.relay.cascade import Cascade
from core.relay.envelopes import MAX_MAX_TOKENS, MIN_MAX_TOKENS, Prompt, auth_required, invalid, parse_prompt
from core.relay.moderation import Moderator
from core.relay.payments import PaymentGate
from core.relay.providers import Provider, ProviderError, Usage, close_stream
from core.relay.safety import SafetyLedger, SafetyRecord
from core.relay.signing import Signed, Signer


@dataclass(slots=True)
class Admission:
    """A request that passed every check up to the cascade."""

    ingress: asyncio.Future[SafetyRecord]
    """Its ingress verdict's record, resolved once durable (the provider is asked meanwhile)."""
    message: str
    max_tokens: int
    charged: list[Move]
    height: int = 0
    """Its state height in the safety ledger, once the ingress record is durable."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """The provider serving a streamed request, and how long the relay waited on providers for the
    first chunk (seconds)."""

    model_id: str
    provider_wait_s: float


Event = tuple[str, "Admitted | list[str] | Signed"]
"""What ``Relay.stream`` yields: ("admitted", Admitted), ("chunks", [text, …]), ("done" | "error", signed)."""


class Relay:
    """The relay surface's behaviour."""

    def __init__(
        self,
        *,
        persona: str,
        signer: Signer,
        moderator: Moderator,
        safety: SafetyLedger,
        cascade: Cascade,
        limiter: Limiter,
        payments: PaymentGate,
        prices: PriceBoard,
        require_auth: bool,
        billing_gate: bool,
        floor_required: bool,
        max_message_chars: int,
        flush_s: float = 0.01,
    ) -> None:
        """``flush_s``: after the first piece of an answer, how long later pieces gather before they
        are sent on together."""
        self.persona = persona
        self.signer = signer
        self.moderator = moderator
        self.safety = safety
        self.cascade = cascade
        self.limiter = limiter
        self.payments = payments
        self.prices = prices
        self.require_auth = require_auth
        self.billing_gate = billing_gate
        self.floor_required = floor_required
        self._max_chars = max_message_chars
        self.flush_s = flush_s

    # -- admission ----------------------------------------------------------------------------

    async def admit(self, principal: Principal, ip: str, prompt: Prompt | bytes) -> Admission:
        """Every check before the cascade, in the documented order.

        ``prompt`` is a parsed Prompt, or the caller's raw JSON body, parsed after auth and rate limit.
        """
        if self.require_auth and principal.kind != "user":
            raise auth_required()
        try:
            await self.limiter.admit(principal.owner, ip)
        except RateLimitedError as err:
            retry = round(err.retry_after_s, 3)
            err.envelope = {"error": "rate_limited", "detail": err.message, "retry_after_s": retry}
            raise
        if isinstance(prompt, bytes):
            prompt = parse_prompt(prompt)
        message, max_tokens = prompt.message, prompt.max_tokens or MIN_MAX_TOKENS
        if not message.strip():
            raise invalid("message", "must be a non-empty string")
        if len(message) > self._max_chars:
            raise invalid("message", f"longer than {self._max_chars} characters")
        if max_tokens < MIN_MAX_TOKENS or max_tokens > MAX_MAX_TOKENS:
            raise invalid("max_tokens", f"must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}")
        charged = await self.payments.charge(message, prompt.payment) if self.billing_gate else []
        verdict = await self.moderator.judge(message, "ingress")
        ingress = self.safety.submit(
            height=None,
            index=0,
            stage="ingress",
            verdict="allow" if verdict.allowed else "refuse",
            category=verdict.category,
            reason=verdict.reason,
            text=message,
            policy_hash=self.moderator.policy_hash,
        )
        no_floor = verdict.allowed and self.floor_required and not self.cascade.floor_healthy()
        if not verdict.allowed or no_floor:
            try:
                height = (await asyncio.shield(ingress)).state_height
            finally:
                await self.payments.refund(charged)
        if not verdict.allowed:
            raise RefusedError(
                verdict.reason,
                envelope={
                    "error": "refused",
                    "stage": "ingress",
                    "reason": verdict.reason,
                    "suggestion": verdict.suggestion,
                    "category": verdict.category,
                    "correlation_id": f"{height}:0",
                },
            )
        if no_floor:
            raise NoFloorError(
                "the open-weights floor is unreachable",
                envelope={
                    "error": "no_floor",
                    "invariant": 17,
                    "detail": "The relay refuses to serve until the open-weights provider is healthy.",
                },
            )
        return Admission(ingress, message, max_tokens, charged)

    # -- the cascade and the verdict ----------------------------------------------------------

    async def open(self, adm: Admission) -> tuple[Provider, str, AsyncIterator[str], Usage, float]:
        """The provider that produced a first chunk (and the seconds waited on providers for it), asked
        while the ingress record is being made durable; that record is durable when this returns.

        The first chunk is never given out before the verdict it follows is durable, and the group
        commit that carries the record runs while the provider works: the record adds nothing to the
        time to the first chunk unless its commit takes longer than the provider. 503
        ProviderErrorEnvelope when no provider can serve; StoreError when the record could not be
        made durable (the provider is stopped, the payment refunded)."""
        opening = asyncio.create_task(self._open(adm), name="ashao-relay-open")
        try:
            adm.height = (await asyncio.shield(adm.ingress)).state_height
        except BaseException:
            opening.cancel()
            (outcome,) = await asyncio.gather(opening, return_exceptions=True)
            if isinstance(outcome, tuple):
                await close_stream(outcome[2])
            if not isinstance(outcome, ProviderFailedError):  # (that one refunded already)
                await self.payments.refund(adm.charged)
            raise
        return await opening

    async def _open(self, adm: Admission) -> tuple[Provider, str, AsyncIterator[str], Usage, float]:
        started = time.perf_counter()
        try:
            opened = await self.cascade.open([{"role": "user", "content": adm.message}], adm.max_tokens)
            return (*opened, time.perf_counter() - started)
        except ProviderError as exc:
            await self.payments.refund(adm.charged)
            raise ProviderFailedError(
                "no provider could serve",
                envelope={
                    "error": "provider_error",
                    "detail": "No healthy provider and the cascade is exhausted; try again shortly.",
                    "providers": [
                        {"name": s.name, "breaker": s.breaker, "healthy": s.healthy}
                        for s in self.cascade.status()
                    ],
                    "cause": str(exc),
                },
            ) from exc

    async def verdict(
        self, adm: Admission, provider: Provider, text: str, usage: Usage
    ) -> tuple[bool, dict[str, Any]]:
        """Egress moderation and its record: (allowed, the final envelope)."""
        verdict = await self.moderator.judge(text, "egress")
        await self.safety.record(
            height=adm.height,
            index=1,
            stage="egress",
            verdict="allow" if verdict.allowed else "refuse",
            category=verdict.category,
            reason=verdict.reason,
            text=text,
            policy_hash=self.moderator.policy_hash,
        )
        correlation = f"{adm.height}:1"
        if not verdict.allowed:
            return False, {
                "error": "refused",
                "stage": "egress",
                "reason": verdict.reason,
                "suggestion": verdict.suggestion,
                "category": verdict.category,
                "correlation_id": correlation,
            }
        output = usage.output_tokens or max(1, len(text) // 4)
        self.prices.observe(output)
        return True, {
            "role": self.persona,
            "text": text,
            "model_id": provider.model_id,
            "usage": {
                "input_tokens": usage.input_tokens or max(1, len(adm.message) // 4),
                "output_tokens": output,
            },
            "correlation_id": correlation,
        }

    async def stream(self, adm: Admission) -> AsyncGenerator[Event, None]:
        """A streaming answer: ("admitted", model id), then ("chunks", pieces)…, then one ("done",
        signed verdict) or ("error", signed envelope).

        Pieces the provider produces within ``flush_s`` of the previous batch (or while it is being
        sent) travel together, so a fast provider's answer takes a few messages, not one per piece. Raises before its first item when no provider can serve, so the
        refusal is a real status. The verdict documents are signed over their canonical JSON, which a
        client re-derives from the parsed event. Closing the iterator early stops the provider (and
        refunds a payment).
        """
        provider, first, rest, usage, waited = await self.open(adm)
        finished = False
        parts = [first]
        buffered: list[str] = []
        wake = asyncio.Event()

        async def pump() -> None:
            try:
                async for piece in rest:
                    buffered.append(piece)
                    wake.set()
            finally:
                wake.set()

        reader = asyncio.create_task(pump(), name="ashao-relay-pieces")
        loop = asyncio.get_running_loop()
        try:
            yield "admitted", Admitted(provider.model_id, waited)
            yield "chunks", [first]
            sent_at = loop.time()
            while True:
                await wake.wait()
                wake.clear()
                # Pieces that follow within the flush window travel together: one message to the
                # facade per window, not per piece (the first piece went at once; the end goes at once).
                hold = sent_at + self.flush_s - loop.time()
                if hold > 0 and not reader.done():
                    await asyncio.wait([reader], timeout=hold)
                if buffered:
                    sent_at = loop.time()
                    batch = buffered[:]
                    buffered.clear()
                    parts.extend(batch)
                    yield "chunks", batch
                if reader.done() and not buffered:
                    break
            exc = reader.exception()
            if exc is not None:
                if not isinstance(exc, ProviderError):
                    raise exc
                finished = True
                await self.payments.refund(adm.charged)
                yield (
                    "error",
                    self.signer.canonical(
                        {
                            "error": "provider_error",
                            "detail": f"the provider failed mid-answer: {exc}",
                            "verdict": "fallback",
                            "partial": True,
                        }
                    ),
                )
                return
            allowed, envelope = await self.verdict(adm, provider, "".join(parts), usage)
            finished = True
            if not allowed:
                await self.payments.refund(adm.charged)
            yield "done", self.signer.canonical({"verdict": "response" if allowed else "refusal", **envelope})
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await close_stream(rest)
            if not finished:
                await self.payments.refund(adm.charged)

    async def chat(self, principal: Principal, ip: str, prompt: Prompt | bytes) -> tuple[Signed, float]:
        """Synchronous chat: the signed envelope and the seconds spent waiting on providers (for the first
        chunk, then for the rest of the answer), or a refusal raised with its envelope."""
        adm = await self.admit(principal, ip, prompt)
        provider, first, rest, usage, waited = await self.open(adm)
        parts = [first]
        try:
            reading = time.perf_counter()
            async for piece in rest:
                parts.append(piece)
            waited += time.perf_counter() - reading
        except ProviderError as exc:
            await self.payments.refund(adm.charged)
            raise ProviderFailedError(
                "the provider failed mid-answer",
                envelope={"error": "provider_error", "detail": str(exc), "providers": []},
            ) from exc
        finally:
            await close_stream(rest)
        allowed, envelope = await self.verdict(adm, provider, "".join(parts), usage)
        if not allowed:
            await self.payments.refund(adm.charged)
            raise RefusedError(envelope["reason"], envelope=envelope)
        return self.signer.document(envelope), waited
