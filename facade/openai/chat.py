"""``POST /v1/chat/completions``: a chat send over the facade's shared send stream, answered whole or
streamed over its shared subscription, exactly as ``/api/chat/send`` and ``/api/chat/stream`` are.

The model names the tier (``ashao-pro`` is the pro tier); the whole conversation comes with every
request, so each one is a new conversation of the caller's (readable at ``/api/conversations/{id}``).
Every refusal (bad input, a bad key, no credits, the rate limit, an unknown model) is decided before
the first byte, so it is a real HTTP status; after it, a failure is an ``error`` event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from fastapi import APIRouter, Request
from starlette.responses import Response

from ashao.v1 import chat_pb2, common_pb2
from facade import docs
from facade.client import Core, CoreClient
from facade.events import Framer
from facade.http import JSON, BadRequest, client_ip, idempotency_key
from facade.mux import Subscription, WatchRefused
from facade.openai.auth import credential
from facade.openai.errors import OpenAIErrorBody, OpenAIRoute, error, errors
from facade.openai.models import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from facade.openai.stream import Answer, ChunkFramer, Collector, failure_code
from facade.sse import SSEResponse
from facade.status import CoreCallFailed, CoreError

router = APIRouter(route_class=OpenAIRoute, tags=["openai"])

_ROLES = {"developer": "system"}
"""Roles ashao knows by another name."""

DONE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {"event": {"const": "message"}, "data": {"const": "[DONE]"}},
}
STREAM_EVENTS = {
    "schema": {
        "oneOf": [
            docs.sse_event(ChatCompletionChunk, resumable=False),
            docs.sse_event(OpenAIErrorBody, resumable=False),
            DONE_EVENT,
        ]
    }
}
"""``stream: true``: chunks, then ``data: [DONE]``, or an error event (and no ``[DONE]``)."""


@router.post(
    "/v1/chat/completions",
    responses={
        200: {
            "model": ChatCompletion,
            "description": "The answer whole (`chat.completion`), or with `stream: true` its chunks as"
            " Server-Sent Events (`chat.completion.chunk`, then `data: [DONE]`; a failure after the"
            " first chunk is an `error` event and no `[DONE]`).",
            "content": {"text/event-stream": STREAM_EVENTS},
        },
        **errors(400, 401, 402, 404, 409, 429, 504),
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request, core: Core) -> Response:
    """Create a chat completion, as OpenAI's API does: `model` (a tier's model, see `GET /v1/models`),
    `messages` (system, developer, user and assistant; text or text parts; the last one the user's),
    `max_tokens` / `max_completion_tokens`, `temperature`, `stop`, `stream` and
    `stream_options.include_usage`; other OpenAI fields are ignored, `n` must be 1 and `tools` absent.

    Auth: `Authorization: Bearer <API key>`; the key `anonymous` (or none) is an anonymous caller, who
    gets the free model (`ashao-free`), rate-limited per address (429 with `Retry-After`). Priced models
    charge their tier's credits per answer (402 when they do not cover it). An unknown model is 404
    `model_not_found`. With an `Idempotency-Key` header a retried request gets the first one's answer.
    `usage.prompt_tokens` is an estimate (about one token per four characters); `completion_tokens`
    counts the tokens relayed.
    """
    if body.stream_options is not None and not body.stream:
        raise BadRequest("stream_options: only with stream: true", field="stream_options")
    key = idempotency_key(request)
    who, ip = credential(request, core.settings), client_ip(request)
    stop: tuple[str, ...] = body.stop
    send = chat_pb2.SendMessageRequest(
        model=body.model,
        messages=[
            common_pb2.ChatMessage(role=_ROLES.get(m.role, m.role), content=m.content) for m in body.messages
        ],
        max_tokens=body.budget,
        temperature=body.temperature,
        stop=stop,
        idempotency_key=key,
    )
    try:
        sent = await core.sender.send(send, credential=who, client_ip=ip, wait_s=core.timeout)
    except CoreCallFailed as failed:
        raise _named_as_asked(failed, body.budget_field) from None
    overhead = core.overhead.measure("openai", request.scope)
    answer = Answer(sent.job_id, int(time.time()), body.model, sent.max_tokens, sent.prompt_tokens)
    if body.stream:
        usage = bool(body.stream_options is not None and body.stream_options.include_usage)
        response = await _streamed(core, answer, ChunkFramer(answer, include_usage=usage), who, ip)
    else:
        response = await _whole(request, core, answer, who, ip)
    response.headers.update(overhead)
    return response


def _named_as_asked(failed: CoreCallFailed, budget_field: str) -> CoreCallFailed:
    """The refusal naming the parameter the client used for the budget (the core calls it max_tokens)."""
    err = failed.error
    if err.field != "max_tokens" or budget_field == "max_tokens":
        return failed
    message = budget_field + err.message.removeprefix("max_tokens")
    return CoreCallFailed(CoreError(err.code, message, err.reason, budget_field))


async def _watch(core: CoreClient, answer: Answer, framer: Framer, who: str, ip: str) -> Subscription:
    try:
        return await core.mux.watch(
            answer.id, 0, credential=who, client_ip=ip, wait_s=core.timeout, framer=framer
        )
    except WatchRefused as refused:
        code = grpc.StatusCode.__members__.get(refused.code, grpc.StatusCode.UNAVAILABLE)
        raise CoreCallFailed(CoreError(code, refused.message)) from None


async def _chunks(opening: bytes, sub: Subscription) -> AsyncIterator[bytes]:
    yield opening
    while (chunk := await sub.next()) is not None:
        yield chunk


async def _streamed(core: CoreClient, answer: Answer, framer: ChunkFramer, who: str, ip: str) -> Response:
    sub = await _watch(core, answer, framer, who, ip)
    mux = core.mux
    return SSEResponse(
        _chunks(framer.opening(), sub),
        watchdog=core.watchdog,
        on_close=lambda: mux.release(sub),
        on_client_gone=lambda: mux.release(sub),
    )


async def _whole(request: Request, core: CoreClient, answer: Answer, who: str, ip: str) -> Response:
    collector = Collector()
    sub = await _watch(core, answer, collector, who, ip)
    try:
        ended = await _until_end(sub, request, core.settings.completion_timeout_s)
    finally:
        core.mux.release(sub)
    if ended == "gone":
        return Response(status_code=204)  # (nobody reads it: the client left)
    if ended == "timeout":
        return error(
            504,
            f"the answer did not finish within {core.settings.completion_timeout_s:g} s; it is still being"
            f" produced: follow it at /api/chat/stream?jobId={answer.id}",
            type_="server_error",
            code="timeout",
            headers={"x-should-retry": "false"},
        )
    if collector.failure is not None:
        message, reason = collector.failure
        return error(503, message, type_="server_error", code=failure_code(reason))
    tokens = collector.tokens_total or 0
    body: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(collector.pieces)},
                "finish_reason": answer.finish_reason(tokens),
                "logprobs": None,
            }
        ],
        "usage": answer.usage(tokens),
    }
    return JSON(body)


async def _until_end(sub: Subscription, request: Request, timeout_s: float) -> str:
    """Wait for the answer's end: "ended", "gone" (the client left first) or "timeout"."""

    async def drain() -> None:
        while await sub.next() is not None:  # (keep-alive frames: nobody to send them to)
            pass

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    ending = asyncio.create_task(drain(), name="ashao-openai-answer")
    leaving = asyncio.create_task(client_gone(), name="ashao-openai-client")
    try:
        done, _ = await asyncio.wait(
            {ending, leaving}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ending.cancel()
        leaving.cancel()
        await asyncio.wait([ending, leaving])  # (never swallows a cancellation of this task)
    if ending in done:
        ending.result()
        return "ended"
    return "gone" if leaving in done else "timeout"
