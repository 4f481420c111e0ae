"""The REST pull path for simple workers: register, claim, token, complete, fail, heartbeat.

Every call after register carries the worker token register returned, as
`Authorization: Bearer <workerToken>`; these calls draw from the same queues as streaming workers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field
from starlette.responses import Response

from ashao.v1 import worker_pb2
from facade.client import Core
from facade.http import JSON, BadRequest, bearer, call_metadata
from facade.network.chat import state_name
from facade.network.errors import NetworkRoute, errors
from facade.validation import Body, Int64, Number, Text, UInt32, UInt64

router = APIRouter(route_class=NetworkRoute, tags=["workers"])


class RegisterBody(Body):
    """A new worker."""

    name: Text = Field(default="", description="Display name.")
    tiers: list[Text] = Field(
        default_factory=list, description="Tiers it serves; empty means every chat tier."
    )
    slots: UInt32 = Field(
        default=1, description="Jobs it claims to run at once (it is given fewer at first)."
    )
    joinToken: Text = Field(default="", description="A join token the operator issued (`join_…`).")
    ownerAddress: Text = Field(
        default="", description="Or the owner's wallet (base58 public key) its earnings belong to."
    )
    ownerSignature: Text = Field(
        default="",
        description="The owner's signature of `ashao-worker-registration/v1\\n<ownerAddress>\\n<name>\\n<signedAtMs>`.",
    )
    signedAtMs: Int64 = Field(default=0, description="When the owner signed (Unix ms, within five minutes).")


class ClaimBody(Body):
    """Which queue to take from."""

    tier: Text = Field(
        default="", description="Tier; empty takes from any tier the worker serves, highest first."
    )


class TokenBody(Body):
    """Tokens of a job assigned to this worker: `token`, or `tokens`."""

    jobId: Text
    token: Text | None = Field(default=None, description="One token (or use `tokens`).")
    tokens: list[Text] | None = Field(default=None, description="Several tokens, in order.")
    index: UInt64 | None = Field(
        default=None,
        description="Index of the (first) token within this attempt; a resend is not counted twice.",
    )


class CompleteBody(Body):
    """A finished job."""

    jobId: Text
    finishReason: Text = ""


class FailBody(Body):
    """A job given up."""

    jobId: Text
    message: Text = ""
    retryable: bool = True


class HeartbeatBody(Body):
    """Liveness and throughput."""

    tokensPerSec: Number = 0.0


_UNNAMED, _ANY_TIER, _NO_FIGURES = RegisterBody(), ClaimBody(), HeartbeatBody()


def _worker_metadata(request: Request, core: Core) -> tuple[tuple[str, str], ...]:
    return call_metadata(request, core.settings, token=bearer(request))


@router.post("/api/worker/register", responses=errors(400, 401, 403, 429))
async def register(request: Request, core: Core, body: RegisterBody = _UNNAMED) -> Response:
    """Create a worker: `{workerId, workerToken, tiers}`. Keep the token: it is shown once. It needs a
    `joinToken` from the operator, or its owner's wallet signature (`ownerAddress`, `ownerSignature`,
    `signedAtMs`); registrations are rate-limited per address (429)."""
    r = await core.workers.RegisterWorker(
        worker_pb2.RegisterWorkerRequest(
            name=body.name,
            tiers=body.tiers,
            slots=body.slots,
            join_token=body.joinToken,
            owner_address=body.ownerAddress,
            owner_signature=body.ownerSignature,
            signed_at_ms=body.signedAtMs,
        ),
        metadata=call_metadata(request, core.settings, token=""),
        timeout=core.timeout,
    )

    return JSON({"workerId": r.worker_id, "workerToken": r.worker_token, "tiers": list(r.tiers)})


@router.post("/api/worker/claim", responses=errors(400, 401, 403))
async def claim(request: Request, core: Core, body: ClaimBody = _ANY_TIER) -> Response:
    """Claim the next job: `{job: {id, tier, model}, messages: [{role, content}]}`, or `{job: null}`.
    The body is optional."""
    r = await core.workers.ClaimJob(
        worker_pb2.ClaimJobRequest(tier=body.tier),
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
            "temperature": r.temperature if r.HasField("temperature") else None,
            "stop": list(r.stop),
        }
    )


@router.post("/api/worker/token", responses=errors(400, 401, 403))
async def token(body: TokenBody, request: Request, core: Core) -> Response:
    """Publish a token (or several) of a job assigned to this worker: `{ok, accepted}`."""
    if body.tokens is not None:
        tokens = body.tokens
    elif body.token is not None:
        tokens = [body.token]
    else:
        raise BadRequest("token: required (or tokens)", field="token")
    jt = worker_pb2.JobTokens(job_id=body.jobId, tokens=tokens)
    if body.index is not None:
        jt.offset = body.index
    r = await core.workers.PublishTokens(
        worker_pb2.PublishTokensRequest(tokens=jt),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "accepted": r.accepted})


@router.post("/api/worker/complete", responses=errors(400, 401, 403))
async def complete(body: CompleteBody, request: Request, core: Core) -> Response:
    """Finish a job: marks it done, credits the worker's earnings share, bumps its stats. `{ok, tokens}`."""
    r = await core.workers.CompleteJob(
        worker_pb2.CompleteJobRequest(job_id=body.jobId, finish_reason=body.finishReason),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "tokens": r.tokens})


@router.post("/api/worker/fail", responses=errors(400, 401, 403))
async def fail(body: FailBody, request: Request, core: Core) -> Response:
    """Give up a job: queued again for another worker when retryable, else failed and refunded."""
    r = await core.workers.FailJob(
        worker_pb2.FailJobRequest(job_id=body.jobId, message=body.message, retryable=body.retryable),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "state": state_name(r.state)})


@router.post("/api/worker/heartbeat", responses=errors(400, 401))
async def heartbeat(request: Request, core: Core, body: HeartbeatBody = _NO_FIGURES) -> Response:
    """Report liveness and throughput; renews the leases of this worker's jobs. The body is optional."""
    r = await core.workers.Heartbeat(
        worker_pb2.HeartbeatRequest(tokens_per_sec=body.tokensPerSec),
        metadata=_worker_metadata(request, core),
        timeout=core.timeout,
    )
    return JSON({"ok": True, "heartbeatIntervalMs": r.heartbeat_interval_ms})


@router.get("/api/worker/me", responses=errors(401))
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
