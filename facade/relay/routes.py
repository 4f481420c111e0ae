"""The relay API: synchronous and streaming chat, status documents, the registry, the safety ledger.

Every body the core signs is passed through byte for byte with ``X-Ashao-Signature`` (Ed25519,
base64) and ``X-Ashao-Key-Id``; verify it with the ``public_key`` of ``GET /registry``. The stream's
``done`` (and ``error``) event carries its envelope with a signature over the envelope's canonical
JSON (keys sorted, no insignificant whitespace, UTF-8), which a client re-derives from the event.
"""

from __future__ import annotations

import grpc
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ashao.v1 import relay_pb2
from facade import docs
from facade.client import Core, CoreClient
from facade.http import call_metadata
from facade.relay import models
from facade.relay.errors import RelayRoute, error_response, mapped, signed
from facade.relay.stream import RelayStream
from facade.sse import SSEResponse
from facade.status import decode

router = APIRouter(route_class=RelayRoute, tags=["relay"])


def prompt_of(raw: bytes) -> relay_pb2.RelayPrompt | None:
    """The typed prompt of a body that ``ChatBody`` accepts, or None for one it does not.

    A well-formed body reaches the core as typed fields, which the core checks for limits as it does
    for any gRPC client. A malformed one is handed to the core as it came (``json_body``): the core
    then answers the 422 envelope naming the field, signed, and after its auth and rate-limit checks,
    exactly as for a body that breaks a limit (the facade cannot sign, and must not let a malformed
    body skip the rate limit or be told apart from a refused credential).
    """
    try:
        body = models.ChatBody.model_validate_json(raw)
    except ValidationError:
        return None
    prompt = relay_pb2.RelayPrompt(message=body.message, max_tokens=body.max_tokens)
    if (p := body.payment) is not None:
        prompt.payment.CopyFrom(
            relay_pb2.PaymentCommitment(
                address=p.address, nonce=p.nonce, price=p.price, signature=p.signature
            )
        )
    return prompt


_CHAT_DOC = {
    "responses": models.CHAT_ERRORS,
    "openapi_extra": docs.body(models.ChatBody),
}


@router.post("/chat", response_model=models.ChatEnvelope, **_CHAT_DOC)  # type: ignore[arg-type]
async def chat(request: Request, core: Core) -> Response:
    """Synchronous chat: one signed envelope `{role, text, model_id, usage, correlation_id}` when
    generation completes. Body `{message, max_tokens}` (`max_tokens` ≥ 1024). The
    `x-ashao-overhead-ms` header says how long the relay itself took (the time spent waiting on the
    provider left out)."""
    raw = await request.body()
    prompt = prompt_of(raw)
    r = await core.relay.Chat(
        relay_pb2.ChatRequest(prompt=prompt) if prompt is not None else relay_pb2.ChatRequest(json_body=raw),
        metadata=call_metadata(request, core.settings),
        timeout=core.settings.relay_timeout_s,
    )
    e = r.envelope
    response = signed(e.body, e.signature, e.key_id)
    response.headers.update(core.overhead.measure("relay", request.scope, waited_s=r.provider_wait_ms / 1000))
    return response


STREAM_PATH = "/chat/stream"


@router.post(
    STREAM_PATH,
    response_class=SSEResponse,
    status_code=200,
    responses={200: models.STREAM_EVENTS, **models.STREAM_ERRORS},
    openapi_extra=docs.body(models.ChatBody),
)
async def chat_stream(request: Request, core: Core) -> Response:
    """Server-Sent Events: `chunk` events `{text}` as the answer is composed, then one `done` event
    `{envelope, signature, key_id}` carrying the canonical response, a refusal or a fallback verdict,
    or an `error` event. Every refusal (auth, rate limit, billing, moderation, no provider) is decided
    before the stream starts and answered with its HTTP status and envelope instead. The
    `x-ashao-overhead-ms` header says how long the relay itself took before the first chunk (the time
    spent waiting on the provider left out)."""
    return await open_stream(request, core)  # serve_stream serves it beneath FastAPI's layers


async def open_stream(request: Request, core: CoreClient) -> Response:
    """The SSE response of ``POST /chat/stream`` (also served by ``serve_stream``)."""
    raw = await request.body()
    prompt = prompt_of(raw)
    call = core.relay.ChatStream(
        relay_pb2.ChatStreamRequest(prompt=prompt)
        if prompt is not None
        else relay_pb2.ChatStreamRequest(json_body=raw),
        metadata=call_metadata(request, core.settings),
        timeout=core.settings.relay_timeout_s,
    )
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as err:
        return error_response(decode(err))
    if not isinstance(first, relay_pb2.ChatStreamResponse) or first.WhichOneof("event") != "admitted":
        call.cancel()
        raise RuntimeError("the core's relay stream did not start with `admitted`")
    events = RelayStream(
        call,
        seq=first.seq,
        coalescer=core.relay_coalescer,
        max_buffer_bytes=core.settings.sse_max_buffer_bytes,
    )
    overhead = core.overhead.measure("relay", request.scope, waited_s=first.admitted.provider_wait_ms / 1000)
    return SSEResponse(
        events,
        watchdog=core.watchdog,
        headers={"X-Ashao-Model-Id": first.admitted.model_id, **overhead},
    )


async def serve_stream(scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    """``POST /chat/stream`` served beneath FastAPI's layers (``facade.fastpath``), as the network
    API's stream is; errors become the same envelopes (``facade.relay.errors.mapped``)."""
    core: CoreClient = scope["app"].state.core
    response = await mapped(lambda r: open_stream(r, core), Request(scope, receive))
    await response(scope, receive, send)


async def _document(name: str, request: Request, core: Core) -> Response:
    r = await core.relay.GetDocument(
        relay_pb2.GetDocumentRequest(name=name),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    d = r.document
    return signed(d.body, d.signature, d.key_id)


@router.get("/health", responses=models.UNREACHABLE)
async def health(request: Request, core: Core) -> Response:
    """Liveness: 200 with relay and arbiter health booleans and watchdog signals."""
    return await _document("health", request, core)


@router.get("/self", responses=models.UNREACHABLE)
async def self_snapshot(request: Request, core: Core) -> Response:
    """Aggregate snapshot: topography, sensorium, vitals across the eight domains, governance."""
    return await _document("self", request, core)


@router.get("/pricing", responses=models.UNREACHABLE)
async def pricing(request: Request, core: Core) -> Response:
    """Posted per-message price and its five slices (variable_cost, overhead, improvement, reserve,
    buffer), computed from live measurements."""
    return await _document("pricing", request, core)


@router.get("/sustainability", responses=models.UNREACHABLE)
async def sustainability(request: Request, core: Core) -> Response:
    """Treasury readiness: runway weeks, fraction of operating float, distance to the reserve floor,
    recurring burn ratio."""
    return await _document("sustainability", request, core)


@router.get("/vitals", responses=models.UNREACHABLE)
async def vitals(request: Request, core: Core) -> Response:
    """The eight vital domains, each with a band (healthy / warning / critical / not_yet_sealed), a
    reading and a methodology hash."""
    return await _document("vitals", request, core)


@router.get("/sensorium", responses=models.UNREACHABLE)
async def sensorium(request: Request, core: Core) -> Response:
    """Interoception, chronoception, proprioception, distress score."""
    return await _document("sensorium", request, core)


@router.get("/registry", response_model=models.Registry, responses=models.UNREACHABLE)
async def registry(request: Request, core: Core) -> Response:
    """The signed relay registry: `{relays: [{endpoint, public_key}], …}`. Pin `public_key`."""
    return await _document("registry", request, core)


@router.get("/ledger/safety/verify", responses=models.UNREACHABLE)
async def verify_safety_ledger(request: Request, core: Core) -> Response:
    """Walk the safety ledger's hash chain end to end: `{intact, records, first_bad_record}`."""
    return await _document("safety_verify", request, core)


@router.get(
    "/ledger/safety/{correlation_id}",
    responses={
        404: {"model": models.NotFoundEnvelope, "description": "No such record"},
        **models.UNREACHABLE,
    },
)
async def safety_record(correlation_id: str, request: Request, core: Core) -> Response:
    """One safety-ledger record (`"<state_height>:<index>"`), with the SHA-256 of the exact text judged."""
    r = await core.relay.GetSafetyRecord(
        relay_pb2.GetSafetyRecordRequest(correlation_id=correlation_id),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    d = r.record
    return signed(d.body, d.signature, d.key_id)
