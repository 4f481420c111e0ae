"""The REST pull path for simple workers: register, claim, token, complete, fail, heartbeat.

Every call after register carries the worker token register returned, as
`Authorization: Bearer <workerToken>`; these calls draw from the same queues as streaming workers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from ashao.v1 import worker_pb2
from facade import docs
from facade.client import Core
from facade.http import (
    JSON,
    BadRequest,
    bearer,
    call_metadata,
    integer,
    json_object,
    number,
    string,
    strings,
)
from facade.network.chat import state_name
from facade.network.errors import NetworkRoute

router = APIRouter(route_class=NetworkRoute, tags=["workers"])


class RegisterBody(BaseModel):
    """A new worker."""

    name: str = Field("", description="Display name.")
    tiers: list[str] = Field(
        default_factory=list, description="Tiers it serves; empty means every chat tier."
    )
    slots: int = Field(1, description="Jobs it runs at once.")


class ClaimBody(BaseModel):
    """Which queue to take from."""

    tier: str = Field("", description="Tier; empty takes from any tier the worker serves, highest first.")


class TokenBody(BaseModel):
    """Tokens of a job assigned to this worker."""

    jobId: str
    token: str | None = Field(None, description="One token (or use `tokens`).")
    tokens: list[str] | None = Field(None, description="Several tokens, in order.")
    index: int | None = Field(
        None, description="Index of the (first) token within this attempt; a resend is not counted twice."
    )


class CompleteBody(BaseModel):
    """A finished job."""

    jobId: str
    finishReason: str = ""


class FailBody(BaseModel):
    """A job given up."""

    jobId: str
    message: str = ""
    retryable: bool = True


class HeartbeatBody(BaseModel):
    """Liveness and throughput."""

    tokensPerSec: float = 0.0


def _worker_metadata(request: Request, core: Core) -> tuple[tuple[str, str], ...]:
    return call_metadata(request, core.settings, token=bearer(request))


@router.post("/api/worker/register", openapi_extra=docs.body(RegisterBody, required=False))
async def register(request: Request, core: Core) -> Response:
    """Create a worker: `{workerId, workerToken, tiers}`. Keep the token: it is shown once."""
    doc = await json_object(request)
    r = await core.workers.RegisterWorker(
        worker_pb2.RegisterWorkerRequest(
            name=string(doc, "name"), tiers=strings(doc, "tiers"), slots=integer(doc, "slots", default=1)
        ),
        timeout=core.timeout,
    )
    return JSON({"workerId": r.worker_id, "workerToken": r.worker_token, "tiers": list(r.tiers)})


@router.post("/api/worker/claim", openapi_extra=docs.body(ClaimBody, required=False))
async def claim(request: Request, core: Core) -> Response:
    """Claim the next job: `{job: {id, tier, model}, messages: [{role, content}]}`, or `{job: null}`."""
    doc = await json_object(request)
    r = await core.workers.ClaimJob(
        worker_pb2.ClaimJobRequest(tier=string(doc, "tier")),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    if not r.HasField("job"):
        return JSON({"job": None})
    return JSON(
        {
            "job": {"id": r.job.id, "tier": r.job.tier, "model": r.job.model},
            "messages": [{"role": m.role, "content": m.content} for m in r.messages],
            "prefix": r.prefix,
            "maxTokens": r.max_tokens,
        }
    )


@router.post("/api/worker/token", openapi_extra=docs.body(TokenBody))
async def token(request: Request, core: Core) -> Response:
    """Publish a token (or several) of a job assigned to this worker: `{ok, accepted}`."""
    doc = await json_object(request)
    if "tokens" in doc:
        tokens = strings(doc, "tokens")
    else:
        tokens = [string(doc, "token", required=True)]
    jt = worker_pb2.JobTokens(job_id=string(doc, "jobId", required=True), tokens=tokens)
    if doc.get("index") is not None:
        index = integer(doc, "index")
        if index < 0:
            raise BadRequest("index: must not be negative", field="index")
        jt.offset = index
    r = await core.workers.PublishTokens(
        worker_pb2.PublishTokensRequest(tokens=jt),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "accepted": r.accepted})


@router.post("/api/worker/complete", openapi_extra=docs.body(CompleteBody))
async def complete(request: Request, core: Core) -> Response:
    """Finish a job: marks it done, credits the worker's earnings share, bumps its stats. `{ok, tokens}`."""
    doc = await json_object(request)
    r = await core.workers.CompleteJob(
        worker_pb2.CompleteJobRequest(
            job_id=string(doc, "jobId", required=True), finish_reason=string(doc, "finishReason")
        ),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "tokens": r.tokens})


@router.post("/api/worker/fail", openapi_extra=docs.body(FailBody))
async def fail(request: Request, core: Core) -> Response:
    """Give up a job: queued again for another worker when retryable, else failed and refunded."""
    doc = await json_object(request)
    retryable = doc.get("retryable", True)
    if not isinstance(retryable, bool):
        raise BadRequest("retryable: must be true or false", field="retryable")
    r = await core.workers.FailJob(
        worker_pb2.FailJobRequest(
            job_id=string(doc, "jobId", required=True), message=string(doc, "message"), retryable=retryable
        ),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "state": state_name(r.state)})


@router.post("/api/worker/heartbeat", openapi_extra=docs.body(HeartbeatBody, required=False))
async def heartbeat(request: Request, core: Core) -> Response:
    """Report liveness and throughput; renews the leases of this worker's jobs."""
    doc = await json_object(request)
    r = await core.workers.Heartbeat(
        worker_pb2.HeartbeatRequest(tokens_per_sec=number(doc, "tokensPerSec")),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "heartbeatIntervalMs": r.heartbeat_interval_ms})


@router.get("/api/worker/me")
async def me(request: Request, core: Core) -> Response:
    """The calling worker's earnings and stats."""
    r = await core.workers.GetWorkerAccount(
        worker_pb2.GetWorkerAccountRequest(), metadata=_worker_metadata(request, core), timeout=core.timeout
    )
    return JSON(
        {
            "workerId": r.worker_id,
            "name": r.name,
            "earnings": r.earnings,
            "jobsCompleted": r.jobs_completed,
            "tokensGenerated": r.tokens_generated,
            "tokensPerSec": r.tokens_per_sec,
            "connected": r.connected,
        }
    )
