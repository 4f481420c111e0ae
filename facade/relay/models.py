"""The relay API's documented bodies: the request body the chat routes check, and the envelopes the
core answers with, as response models for the interactive reference at /docs.

The core produces the envelopes (and signs them); their models describe them for clients and are
not used to re-serialise anything: the facade passes the core's exact bytes through, so the
signature in ``X-Ashao-Signature`` stays valid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from facade import docs
from facade.validation import Body, Text


class PaymentCommitment(Body):
    """A wallet's commitment to pay the posted price for one message (retry after a 402)."""

    address: Text = Field(description="The wallet's base58 Ed25519 public key (a signed-in user).")
    nonce: Text = Field(description="The single-use nonce from the PaymentChallenge.")
    price: int = Field(ge=0, le=2**63 - 1, description="The price from the PaymentChallenge, in credits.")
    signature: Text = Field(
        description="Ed25519 signature (base58 or base64) of the UTF-8 bytes "
        '"ashao-relay-payment/v1\\n<nonce>\\n<price>\\n<lowercase hex SHA-256 of message>".'
    )


class ChatBody(Body):
    """What the caller asks."""

    message: Text = Field(examples=["Hello Xion. In one short paragraph, tell me what you are."])
    max_tokens: int = Field(
        default=1024,
        ge=1024,
        le=2**32 - 1,
        description="At least 1024: the relay enforces meaningful responses (the core sets the most).",
    )
    payment: PaymentCommitment | None = Field(default=None, description="Set when retrying after a 402.")


class Usage(BaseModel):
    """Token counts in the model's tokenizer."""

    input_tokens: int
    output_tokens: int


class ChatEnvelope(BaseModel):
    """A successful response. Its exact bytes are signed (``X-Ashao-Signature``, ``X-Ashao-Key-Id``)."""

    role: str = Field(description='The persona; "xion" by default.')
    text: str
    model_id: str = Field(description="The upstream model (or the network tier) that served the response.")
    usage: Usage
    correlation_id: str = Field(
        description='Safety-ledger record "<state_height>:<index>" of the egress moderation pass.'
    )


class AuthChallenge(BaseModel):
    """401: missing or invalid bearer while the deployment requires auth. Re-acquire and retry."""

    error: Literal["auth_required"]
    detail: str
    scheme: Literal["Bearer"]


class PaymentChallenge(BaseModel):
    """402: the billing gate wants a commitment; sign it per ``commitment_format`` and retry."""

    error: Literal["payment_required"]
    price: int
    currency: str
    nonce: str
    expires_at: int = Field(description="Unix milliseconds.")
    commitment_format: str
    message_sha256: str
    detail: str


class RateLimitChallenge(BaseModel):
    """429: per-principal or per-IP limit (or the daily quota) exceeded. Wait ``retry_after_s``."""

    error: Literal["rate_limited"]
    detail: str
    retry_after_s: float


class RefusalEnvelope(BaseModel):
    """451: ingress or egress moderation declined."""

    error: Literal["refused"]
    stage: Literal["ingress", "egress"]
    reason: str
    suggestion: str
    category: str
    correlation_id: str


class NoFloorEnvelope(BaseModel):
    """503: the open-weights floor is unreachable; the relay refuses until it is healthy."""

    error: Literal["no_floor"]
    invariant: int
    detail: str


class ProviderStatus(BaseModel):
    """One provider of the cascade."""

    name: str
    breaker: str
    healthy: bool


class ProviderErrorEnvelope(BaseModel):
    """503: no healthy hosted provider and the floor cascade is exhausted. Try again shortly."""

    error: Literal["provider_error"]
    detail: str
    providers: list[ProviderStatus] = Field(default_factory=list)
    cause: str = ""


class InvalidRequestEnvelope(BaseModel):
    """422: bad input; ``field`` names it."""

    error: Literal["invalid_request"]
    field: str
    detail: str


class PayloadTooLargeEnvelope(BaseModel):
    """413: the request body is larger than the relay accepts (``limit_bytes``)."""

    error: Literal["payload_too_large"]
    detail: str
    limit_bytes: int


class StreamChunk(BaseModel):
    """The data of a ``chunk`` event: the next piece of the answer."""

    text: str


class StreamResponse(ChatEnvelope):
    """The envelope of a ``done`` event carrying the answer (the ``/chat`` envelope, with its verdict)."""

    verdict: Literal["response"]


class StreamRefusal(RefusalEnvelope):
    """The envelope of a ``done`` event whose answer egress moderation declined."""

    verdict: Literal["refusal"]


class StreamFailure(BaseModel):
    """The envelope of an ``error`` event: the answer broke off after it began (``partial``)."""

    error: Literal["provider_error"]
    detail: str
    partial: bool
    verdict: Literal["fallback"] | None = Field(
        default=None,
        description='"fallback" when the core saw the provider fail; absent when the relay lost it.',
    )


class StreamDone(BaseModel):
    """The data of a ``done`` event: the signed verdict."""

    envelope: StreamResponse | StreamRefusal
    signature: str = Field(description="Ed25519 signature (base64) of the envelope's canonical JSON.")
    key_id: str


class StreamError(BaseModel):
    """The data of an ``error`` event: what broke, signed by the core (or unsigned, with empty
    ``signature`` and ``key_id``, when the relay lost the stream itself)."""

    envelope: StreamFailure
    signature: str
    key_id: str


class NotFoundEnvelope(BaseModel):
    """404: no such document or record."""

    error: Literal["not_found"]
    detail: str


class Relay(BaseModel):
    """One relay of the registry."""

    endpoint: str
    public_key: str = Field(description="Ed25519 public key, base64: pin it and verify signatures with it.")
    public_key_b58: str
    key_id: str


class Registry(BaseModel):
    """The signed relay registry (signed over these exact bytes, canonical JSON)."""

    version: int
    issued_at: int
    relays: list[Relay]


UNREACHABLE: dict[int | str, dict[str, object]] = {
    503: {
        "model": ProviderErrorEnvelope,
        "description": "The relay cannot reach its core; try again shortly.",
    }
}
"""The failure every relay route can answer besides its own."""

CHAT_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": AuthChallenge, "description": "AuthChallenge"},
    402: {"model": PaymentChallenge, "description": "PaymentChallenge"},
    413: {"model": PayloadTooLargeEnvelope, "description": "The body is larger than the limit"},
    422: {"model": InvalidRequestEnvelope, "description": "Invalid request"},
    429: {"model": RateLimitChallenge, "description": "RateLimitChallenge (and Retry-After)"},
    451: {"model": RefusalEnvelope, "description": "RefusalEnvelope"},
    503: {
        "model": NoFloorEnvelope | ProviderErrorEnvelope,
        "description": "NoFloorEnvelope or ProviderErrorEnvelope",
    },
}
"""The documented failure modes of /chat and /chat/stream."""


def _json_ref(*names: str) -> dict[str, object]:
    schema: dict[str, object] = (
        {"$ref": f"#/components/schemas/{names[0]}"}
        if len(names) == 1
        else {"anyOf": [{"$ref": f"#/components/schemas/{n}"} for n in names]}
    )
    return {"application/json": {"schema": schema}}


STREAM_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"description": str(doc["description"]), "content": _json_ref(*names)}
    for (status, doc), names in zip(
        CHAT_ERRORS.items(),
        [
            ("AuthChallenge",),
            ("PaymentChallenge",),
            ("PayloadTooLargeEnvelope",),
            ("InvalidRequestEnvelope",),
            ("RateLimitChallenge",),
            ("RefusalEnvelope",),
            ("NoFloorEnvelope", "ProviderErrorEnvelope"),
        ],
        strict=True,
    )
}
"""The same failure modes for /chat/stream: JSON envelopes, although its success is an event stream
(the schemas are those /chat registers)."""


STREAM_EVENTS: dict[str, object] = {
    "description": "Events `chunk` `{text}` as the answer is composed, then one `done` "
    "`{envelope, signature, key_id}` with the verdict, or one `error` of the same shape. Each event has "
    "an `id`; `: keep-alive` comments may come between them.",
    "content": {
        "text/event-stream": {
            "schema": {
                "oneOf": [
                    docs.sse_event(StreamChunk, name="chunk"),
                    docs.sse_event(StreamDone, name="done"),
                    docs.sse_event(StreamError, name="error"),
                ]
            }
        }
    },
}
"""The 200 of /chat/stream: the schema of each event (OpenAPI 3.1 reads an event stream's ``schema`` as
that of one event: ``event``, ``id``, and ``data`` holding JSON)."""
