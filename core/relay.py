"""The relay pipeline: auth → rate limit → billing gate → ingress moderation → provider cascade →
egress moderation → safety ledger → signed envelope.

Everything that can refuse a request is decided in ``admit()`` and ``Cascade.open()`` — before a
streaming caller is told it was admitted — so refusals are real statuses with their envelopes.

The payment commitment a wallet signs is exactly these UTF-8 bytes (lines joined by "\\n"):
``ashao-relay-payment/v1``, the nonce, the price in credits (decimal), and the lowercase hex
SHA-256 of the message's UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError

from core.auth import Accounts, Principal, decode_signature, public_key_of
from core.errors import (
    InvalidArgumentError,
    NoFloorError,
    NotFoundError,
    PaymentRequiredError,
    ProviderFailedError,
    RateLimitedError,
    RefusedError,
    UnauthenticatedError,
)
from core.ledger import TREASURY, Ledger, Move, user_account
from core.moderation import Moderator
from core.pricing import PriceBoard
from core.providers import Cascade, Provider, ProviderError, Usage, close_stream
from core.ratelimit import RateLimiter
from core.safety import SafetyLedger
from core.signing import Signer, canonical_json
from core.store import Store, StoreError
from core.vitals import Vitals

MIN_MAX_TOKENS = 1024
MAX_MAX_TOKENS = 32_768
PAYMENT_TTL_S = 300.0
COMMITMENT_FORMAT = "ashao-relay-payment/v1\\n{nonce}\\n{price}\\n{sha256(message) hex}"


@dataclass(frozen=True, slots=True)
class Signed:
    """Exact body bytes and their signature."""

    body: bytes
    signature: str
    key_id: str


@dataclass(slots=True)
class Admission:
    """A request that passed every check up to the cascade."""

    height: int
    message: str
    max_tokens: int
    charged: list[Move]


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a relay caller asks: the message, the token budget, and an optional payment commitment."""

    message: str
    max_tokens: int = MIN_MAX_TOKENS
    payment: dict[str, Any] | None = None


_PAYMENT_FIELDS = {"address": str, "nonce": str, "price": int, "signature": str}


def _invalid(field: str, problem: str) -> InvalidArgumentError:
    """The 422 envelope naming ``field``."""
    return InvalidArgumentError(
        f"{field}: {problem}",
        field=field,
        envelope={"error": "invalid_request", "field": field, "detail": f"{field}: {problem}"},
    )


def parse_prompt(body: bytes) -> Prompt:
    """A caller's JSON body ``{message, max_tokens?, payment?}`` as a Prompt; the 422 envelope otherwise.

    Only the shape is checked here; the limits are checked in ``Relay.admit`` for every caller alike.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid("body", f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _invalid("body", "must be a JSON object")
    message = doc.get("message")
    if not isinstance(message, str):
        raise _invalid("message", "required, a string")
    max_tokens = doc.get("max_tokens", MIN_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise _invalid("max_tokens", "must be an integer")
    payment = doc.get("payment")
    if payment is not None:
        if not isinstance(payment, dict):
            raise _invalid("payment", "must be an object {address, nonce, price, signature}")
        for name, kind in _PAYMENT_FIELDS.items():
            value = payment.get(name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise _invalid(f"payment.{name}", f"required, {'an integer' if kind is int else 'a string'}")
    return Prompt(message, max_tokens, payment)


def commitment_bytes(nonce: str, price: int, message: str) -> bytes:
    """The bytes a wallet signs to commit to pay ``price`` for ``message``."""
    digest = hashlib.sha256(message.encode()).hexdigest()
    return f"ashao-relay-payment/v1\n{nonce}\n{price}\n{digest}".encode()


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
        limiter: RateLimiter,
        accounts: Accounts,
        ledger: Ledger,
        store: Store,
        prices: PriceBoard,
        require_auth: bool,
        billing_gate: bool,
        floor_required: bool,
        max_message_chars: int,
    ) -> None:
        self.persona = persona
        self.signer = signer
        self.moderator = moderator
        self.safety = safety
        self.cascade = cascade
        self.limiter = limiter
        self._accounts = accounts
        self._ledger = ledger
        self._store = store
        self.prices = prices
        self.require_auth = require_auth
        self.billing_gate = billing_gate
        self.floor_required = floor_required
        self._max_chars = max_message_chars
        self._payment_nonces: dict[str, tuple[int, float]] = {}

    def sign(self, document: Any) -> Signed:
        """Serialise ``document`` once and sign exactly those bytes."""
        body = orjson.dumps(document)
        return Signed(body, self.signer.sign(body), self.signer.key_id)

    def sign_canonical(self, document: Any) -> Signed:
        """Sign the canonical JSON of ``document`` (for documents others must reproduce)."""
        body = canonical_json(document)
        return Signed(body, self.signer.sign(body), self.signer.key_id)

    # -- admission ----------------------------------------------------------------------------

    async def admit(self, principal: Principal, ip: str, prompt: Prompt | bytes) -> Admission:
        """Every check before the cascade, in the documented order.

        ``prompt`` is a parsed Prompt, or the caller's raw JSON body, parsed after auth and rate limit.
        """
        if self.require_auth and principal.kind != "user":
            raise UnauthenticatedError(
                "a bearer token is required",
                envelope={
                    "error": "auth_required",
                    "detail": "Missing or invalid bearer; re-acquire and retry.",
                    "scheme": "Bearer",
                },
            )
        try:
            self.limiter.check(principal.owner, ip)
        except RateLimitedError as err:
            retry = round(err.retry_after_s, 3)
            err.envelope = {"error": "rate_limited", "detail": err.message, "retry_after_s": retry}
            raise
        if isinstance(prompt, bytes):
            prompt = parse_prompt(prompt)
        message, max_tokens = prompt.message, prompt.max_tokens or MIN_MAX_TOKENS
        if not message.strip():
            raise _invalid("message", "must be a non-empty string")
        if len(message) > self._max_chars:
            raise _invalid("message", f"longer than {self._max_chars} characters")
        if max_tokens < MIN_MAX_TOKENS or max_tokens > MAX_MAX_TOKENS:
            raise _invalid("max_tokens", f"must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}")
        charged = await self._billing_gate(message, prompt.payment) if self.billing_gate else []
        height = self.safety.next_height()
        verdict = await self.moderator.judge(message, "ingress")
        await self.safety.record(
            height=height,
            index=0,
            stage="ingress",
            verdict="allow" if verdict.allowed else "refuse",
            category=verdict.category,
            reason=verdict.reason,
            text=message,
            policy_hash=self.moderator.policy_hash,
        )
        if not verdict.allowed:
            await self._refund(charged)
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
        if self.floor_required and not self.cascade.floor_healthy():
            await self._refund(charged)
            raise NoFloorError(
                "the open-weights floor is unreachable",
                envelope={
                    "error": "no_floor",
                    "invariant": 17,
                    "detail": "The relay refuses to serve until the open-weights provider is healthy.",
                },
            )
        return Admission(height, message, max_tokens, charged)

    def payment_challenge(self, message: str) -> PaymentRequiredError:
        """A fresh 402 with the posted price and a single-use nonce."""
        price = self.prices.current().price
        nonce = secrets.token_hex(16)
        now = time.time()
        if len(self._payment_nonces) > 100_000:
            self._payment_nonces = {n: v for n, v in self._payment_nonces.items() if v[1] > now}
        self._payment_nonces[nonce] = (price, now + PAYMENT_TTL_S)
        return PaymentRequiredError(
            "payment required",
            envelope={
                "error": "payment_required",
                "price": price,
                "currency": "credits",
                "nonce": nonce,
                "expires_at": int((now + PAYMENT_TTL_S) * 1000),
                "commitment_format": COMMITMENT_FORMAT,
                "message_sha256": hashlib.sha256(message.encode()).hexdigest(),
                "detail": "Sign the commitment bytes with your wallet key and retry with payment.",
            },
        )

    async def _billing_gate(self, message: str, payment: dict[str, Any] | None) -> list[Move]:
        if not payment or not payment.get("nonce"):
            raise self.payment_challenge(message)
        nonce, price, address = payment["nonce"], int(payment.get("price", 0)), payment.get("address", "")
        posted = self._payment_nonces.pop(nonce, None)
        if posted is None or posted[1] < time.time() or posted[0] != price:
            raise self.payment_challenge(message)
        try:
            key = public_key_of(address)
            key.verify(
                commitment_bytes(nonce, price, message), decode_signature(payment.get("signature", ""))
            )
        except (BadSignatureError, ValueError, InvalidArgumentError):
            raise self.payment_challenge(message) from None
        try:
            uid = self._accounts.find_user(address)
        except NotFoundError:
            raise self.payment_challenge(message) from None
        moves = [Move(user_account(uid), TREASURY, price, "relay_charge", nonce)]
        try:
            rows = self._ledger.moves(moves)
        except PaymentRequiredError:
            raise self.payment_challenge(message) from None
        try:
            await self._store.write(rows)
        except StoreError:
            self._ledger.revert(moves)
            raise
        return moves

    async def _refund(self, charged: list[Move]) -> None:
        if not charged:
            return
        back = [Move(m.credit, m.debit, m.amount, "relay_refund", m.ref) for m in charged]
        await self._store.write(self._ledger.moves(back))

    # -- the cascade and the verdict ----------------------------------------------------------

    async def open(self, adm: Admission) -> tuple[Provider, str, AsyncIterator[str], Usage]:
        """The provider that produced a first chunk, or 503 ProviderErrorEnvelope."""
        try:
            return await self.cascade.open([{"role": "user", "content": adm.message}], adm.max_tokens)
        except ProviderError as exc:
            await self._refund(adm.charged)
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

    async def stream(self, adm: Admission) -> AsyncGenerator[tuple[str, str | Signed], None]:
        """A streaming answer as (kind, value): ("admitted", model id), then ("chunk", text)…, then one
        ("done", signed verdict) or ("error", signed envelope).

        Raises before its first item when no provider can serve, so the refusal is a real status.
        The verdict documents are signed over their canonical JSON, which a client re-derives from the
        parsed event. Closing the iterator early stops the provider (and refunds a payment).
        """
        provider, first, rest, usage = await self.open(adm)
        finished = False
        try:
            yield "admitted", provider.model_id
            parts = [first]
            yield "chunk", first
            try:
                async for piece in rest:
                    parts.append(piece)
                    yield "chunk", piece
            except ProviderError as exc:
                finished = True
                await self._refund(adm.charged)
                yield (
                    "error",
                    self.sign_canonical(
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
                await self._refund(adm.charged)
            yield "done", self.sign_canonical({"verdict": "response" if allowed else "refusal", **envelope})
        finally:
            await close_stream(rest)
            if not finished:
                await self._refund(adm.charged)

    async def chat(self, principal: Principal, ip: str, prompt: Prompt | bytes) -> Signed:
        """Synchronous chat: the signed envelope, or a refusal raised with its envelope."""
        adm = await self.admit(principal, ip, prompt)
        provider, first, rest, usage = await self.open(adm)
        parts = [first]
        try:
            async for piece in rest:
                parts.append(piece)
        except ProviderError as exc:
            await self._refund(adm.charged)
            raise ProviderFailedError(
                "the provider failed mid-answer",
                envelope={"error": "provider_error", "detail": str(exc), "providers": []},
            ) from exc
        finally:
            await close_stream(rest)
        allowed, envelope = await self.verdict(adm, provider, "".join(parts), usage)
        if not allowed:
            await self._refund(adm.charged)
            raise RefusedError(envelope["reason"], envelope=envelope)
        return self.sign(envelope)


class RelayDocuments:
    """The relay's status documents, each signed over its exact body."""

    def __init__(self, *, relay: Relay, vitals: Vitals, endpoint: str) -> None:
        self._relay = relay
        self._vitals = vitals
        self._endpoint = endpoint
        self._policy_at_start = relay.moderator.policy_hash

    async def get(self, name: str) -> Signed:
        """The document called ``name``."""
        r, v = self._relay, self._vitals
        if name == "health":
            return r.sign(await v.health())
        if name == "vitals":
            return r.sign(await v.vitals_document())
        if name == "sensorium":
            return r.sign(await v.sensorium())
        if name == "sustainability":
            return r.sign(await v.sustainability())
        if name == "pricing":
            p = r.prices.current()
            return r.sign(
                {
                    "price": p.price,
                    "currency": "credits",
                    "per": "message",
                    "slices": {
                        "variable_cost": round(p.variable_cost, 4),
                        "overhead": round(p.overhead, 4),
                        "improvement": round(p.improvement, 4),
                        "reserve": round(p.reserve, 4),
                        "buffer": round(p.buffer, 4),
                    },
                    "sealed": p.sealed,
                    "measured": {
                        "mean_output_tokens": round(p.mean_output_tokens, 2),
                        "messages_per_week": round(p.messages_per_week, 1),
                    },
                    "billing_gate": r.billing_gate,
                    "commitment_format": COMMITMENT_FORMAT,
                }
            )
        if name == "self":
            return r.sign(
                {
                    "topography": {
                        "relay_key_id": r.signer.key_id,
                        "endpoint": self._endpoint,
                        "lineage_drift": r.moderator.policy_hash != self._policy_at_start,
                    },
                    "sensorium": await v.sensorium(),
                    "vitals": (await v.vitals_document())["domains"],
                    "governance": {
                        "policy_hash": r.moderator.policy_hash,
                        "floor_required": r.floor_required,
                        "billing_gate": r.billing_gate,
                        "auth_required": r.require_auth,
                        "persona": r.persona,
                    },
                }
            )
        if name == "registry":
            return r.sign_canonical(
                {
                    "version": 1,
                    "issued_at": int(time.time() * 1000),
                    "relays": [
                        {
                            "endpoint": self._endpoint,
                            "public_key": r.signer.public_key_b64,
                            "public_key_b58": r.signer.public_key_b58,
                            "key_id": r.signer.key_id,
                        }
                    ],
                }
            )
        if name == "safety_verify":
            intact, checked, first_bad = await r.safety.verify()
            return r.sign({"intact": intact, "records": checked, "first_bad_record": first_bad or None})
        raise NotFoundError(
            f"name: no document {name!r}",
            field="name",
            envelope={"error": "not_found", "detail": f"no document {name!r}"},
        )

    async def safety_record(self, correlation_id: str) -> Signed:
        """A safety-ledger record as JSON."""
        rec = await self._relay.safety.get(correlation_id)
        if rec is None:
            raise NotFoundError(
                f"correlation_id: no record {correlation_id!r}",
                field="correlation_id",
                envelope={"error": "not_found", "detail": f"no safety record {correlation_id!r}"},
            )
        return self._relay.sign({"correlation_id": rec.correlation_id, **rec.body(), "hash": rec.hash})
