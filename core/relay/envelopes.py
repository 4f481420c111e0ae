"""The relay's request and its documented error envelopes, each built in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from core.errors import InvalidArgumentError, UnauthenticatedError

MIN_MAX_TOKENS = 1024
MAX_MAX_TOKENS = 32_768


@dataclass(frozen=True, slots=True)
class Prompt:
    """What a relay caller asks: the message, the token budget, and an optional payment commitment."""

    message: str
    max_tokens: int = MIN_MAX_TOKENS
    payment: dict[str, Any] | None = None


MAX_PRICE = 2**63 - 1
"""Credits are 64-bit: a price beyond cannot be charged (nor stored)."""
_PAYMENT_FIELDS = {"address": str, "nonce": str, "price": int, "signature": str}


def auth_required(detail: str = "Missing or invalid bearer; re-acquire and retry.") -> UnauthenticatedError:
    """401 AuthChallenge."""
    return UnauthenticatedError(
        detail, envelope={"error": "auth_required", "detail": detail, "scheme": "Bearer"}
    )


def invalid(field: str, problem: str) -> InvalidArgumentError:
    """422 naming ``field``."""
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
        raise invalid("body", f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise invalid("body", "must be a JSON object")
    message = doc.get("message")
    if not isinstance(message, str):
        raise invalid("message", "required, a string")
    max_tokens = doc.get("max_tokens", MIN_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise invalid("max_tokens", "must be an integer")
    payment = doc.get("payment")
    if payment is not None:
        if not isinstance(payment, dict):
            raise invalid("payment", "must be an object {address, nonce, price, signature}")
        for name, kind in _PAYMENT_FIELDS.items():
            value = payment.get(name)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise invalid(f"payment.{name}", f"required, {'an integer' if kind is int else 'a string'}")
        price = payment["price"]
        if not 0 <= price <= MAX_PRICE:
            raise invalid("payment.price", f"must be between 0 and {MAX_PRICE}")
    return Prompt(message, max_tokens, payment)
