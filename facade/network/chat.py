"""Chat: send a message as a job, stream its tokens as Server-Sent Events, read jobs and conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ashao.v1 import chat_pb2, common_pb2
from facade import docs
from facade.client import Core, CoreClient
from facade.http import JSON, BadRequest, call_metadata, client_ip, credential, idempotency_key
from facade.mux import Mux, Subscription, WatchRefused
from facade.network.errors import NetworkRoute, errors, guarded, json_errors
from facade.sse import SSEResponse
from facade.validation import Body, Text

router = APIRouter(route_class=NetworkRoute, tags=["chat"])

_WATCH_STATUS = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


class SendBody(Body):
    """A message to send."""

    tier: Text = Field(description="free, basic, pro or ultra", examples=["pro"])
    content: Text = Field(description="The user's message.", examples=["Explain how ashao routes a prompt."])
    conversationId: Text | None = Field(default=None, description="Continue this conversation (conv_…).")


def state_name(state: int) -> str:
    """``JOB_STATE_QUEUED`` → ``queued``."""
    return common_pb2.JobState.Name(state)[len("JOB_STATE_") :].lower()  # type: ignore[arg-type]


def job_json(job: common_pb2.Job) -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "id": job.id,
        "tier": job.tier,
        "model": job.model,
        "conversationId": job.conversation_id,
        "state": state_name(job.state),
        "attempts": job.attempts,
        "workerId": job.worker_id,
        "tokens": job.tokens,
        "createdAt": job.created_at_ms,
        "error": job.error,
    }


@router.post("/api/chat/send", responses=errors(400, 401, 402, 409, 429))
async def send(body: SendBody, request: Request, core: Core) -> Response:
    """Send a message: persists the conversation and the message and queues a job; returns at once.

    Charges the tier's credit cost when signed in (priced tiers need a signed-in caller). Answers
    `{jobId, conversationId}`; bad input is 400 `{error}` naming the field, and nothing is queued.
    With an `Idempotency-Key` header (up to 128 characters), a retry of the same send within 24 hours
    answers the first send's ids and queues and charges nothing again (a different message under the
    same key is 409). Free-tier sends are rate-limited per caller and address (429 with Retry-After).
    A `content` longer than the limit (32,000 characters by default) is 400; a body past the body
    limit (1 MiB by default) is 413. The `x-ashao-overhead-ms` header says how long the send took in
    ashao (until the job was durable and handed to a worker).
    """
    return await send_message(
        body, request, core
    )  # serve_send (facade.fastpath) serves well-formed sends itself


async def send_message(body: SendBody, request: Request, core: CoreClient) -> Response:
    """The response to ``POST /api/chat/send`` with a valid ``body`` (also served by ``serve_send``)."""
    key = idempotency_key(request)
    limit = core.settings.max_content_chars
    if len(body.content) > limit:  # the core would refuse it too; it need not travel there to be
        raise BadRequest(f"content: longer than {limit} characters", field="content")
    caller, ip = credential(request, core.settings), client_ip(request)
    r = await core.sender.send(
        chat_pb2.SendMessageRequest(
            tier=body.tier,
            content=body.content,
            conversation_id=body.conversationId or "",
            idempotency_key=key,
        ),
        credential=caller,
        client_ip=ip,
        wait_s=core.timeout,
    )
    core.primer.prime(r.job_id, credential=caller, client_ip=ip)  # for the stream opened next
    return JSON(
        {"jobId": r.job_id, "conversationId": r.conversation_id},
        headers=core.overhead.measure("network", request.scope),
    )


_MAX_SEQ = 2**64 - 1  # event ids are uint64


def _after_seq(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId") or "0"
    # (str.isdigit also says yes to "²" and other scripts' digits, which int() refuses, as it refuses
    # more than 4,300 digits)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20) or int(raw) > _MAX_SEQ:
        raise BadRequest(
            "Last-Event-ID: must be an event id (an integer from 0 to 2^64-1)", field="Last-Event-ID"
        )
    return int(raw)


async def _frames(sub: Subscription) -> AsyncIterator[bytes]:
    while (chunk := await sub.next()) is not None:
        yield chunk


STREAM_PATH = "/api/chat/stream"


class TokenEvent(BaseModel):
    """The data of a token event: the next token of the answer."""

    type: Literal["token"]
    value: str


class DoneEvent(BaseModel):
    """The data of the last event of a finished job: how many tokens it produced."""

    type: Literal["done"]
    tokens: int


class ErrorEvent(BaseModel):
    """The data of the last event of a failed job (or of a stream cut off): what went wrong."""

    type: Literal["error"]
    message: str


STREAM_EVENTS = {
    "description": "Token events, then one done or error event (each with an `id`; `: keep-alive` "
    "comments may come between them).",
    "content": {
        "text/event-stream": {
            "schema": {"oneOf": [docs.sse_event(m) for m in (TokenEvent, DoneEvent, ErrorEvent)]}
        }
    },
}
"""The 200 of the stream: the schema of each event (OpenAPI 3.1 reads an event stream's ``schema`` as
that of one event)."""


@router.get(
    STREAM_PATH,
    response_class=SSEResponse,
    status_code=200,
    responses={
        200: STREAM_EVENTS,
        204: {"description": "The job has ended and the client has its every event: do not reconnect."},
        **json_errors(400, 401, 404),
    },
)
async def stream(
    request: Request,
    core: Core,
    jobId: Annotated[str, Query(description="The job to follow (job_…).")],
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this event id (a non-negative integer)."),
    ] = None,
    lastEventId: Annotated[
        str | None, Query(description="As `Last-Event-ID`, for clients that cannot set headers.")
    ] = None,
) -> Response:
    """Server-Sent Events of one job: `{type:"token",value}` per token as produced, then
    `{type:"done",tokens}` or `{type:"error",message}`. Every event has an `id`; reconnecting with
    `Last-Event-ID` (as EventSource does) resumes after it, and a stream opened after the job ended
    replays it; resuming at or past the job's last event is 204 No Content, which tells an
    EventSource not to reconnect. An unknown job is 404 `{error}` before the stream starts.
    """
    return await open_stream(request, core)  # checks its parameters itself: serve_stream serves it


async def open_stream(request: Request, core: CoreClient) -> Response:
    """The SSE response for ``GET /api/chat/stream`` (also served by ``serve_stream``)."""
    job_id = request.query_params.get("jobId", "")
    if not job_id:
        raise BadRequest("jobId: required", field="jobId")
    after = _after_seq(request)
    mux: Mux = core.mux
    caller, ip = credential(request, core.settings), client_ip(request)
    try:
        sub = core.primer.claim(job_id, after, credential=caller, client_ip=ip)
        if sub is None:
            sub = await mux.watch(job_id, after, credential=caller, client_ip=ip, wait_s=core.timeout)
        else:
            try:
                await mux.accepted(sub, core.timeout)  # (answered already, as a rule)
            except BaseException:
                mux.release(sub)
                raise
    except WatchRefused as refused:
        status = _WATCH_STATUS.get(refused.code, 503)
        return JSON({"error": refused.message}, status_code=status)
    overhead = core.overhead.measure("network_stream", request.scope)
    if sub.finished:  # the EventSource way to say "this stream is over, do not reconnect"
        return Response(status_code=204, headers=overhead)
    return SSEResponse(
        _frames(sub),
        watchdog=core.watchdog,
        on_close=lambda: mux.release(sub),
        on_client_gone=lambda: mux.release(sub),
        buffer=sub,
        headers=overhead,
    )


async def serve_stream(scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
    """``GET /api/chat/stream`` served beneath FastAPI's layers (``facade.fastpath``): each write of a
    busy stream passing through the router's exception wrappers would cost more than the write."""
    core: CoreClient = scope["app"].state.core
    response = await guarded(open_stream(Request(scope, receive), core))
    await response(scope, receive, send)


@router.get("/api/jobs/{job_id}", responses=errors(401, 404))
async def get_job(job_id: str, request: Request, core: Core) -> Response:
    """One job's state: `{job: {id, tier, model, conversationId, state, attempts, workerId, tokens, …}}`."""
    r = await core.chat.GetJob(
        chat_pb2.GetJobRequest(job_id=job_id),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON({"job": job_json(r.job)})


@router.get("/api/conversations/{conversation_id}", responses=errors(401, 404))
async def get_conversation(conversation_id: str, request: Request, core: Core) -> Response:
    """A conversation and its messages, oldest first: `{conversationId, messages: [{role, content}]}`."""
    r = await core.chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=conversation_id),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON(
        {
            "conversationId": r.conversation_id,
            "messages": [{"role": m.role, "content": m.content} for m in r.messages],
        }
    )
