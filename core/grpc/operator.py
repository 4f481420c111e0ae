"""OperatorService: join tokens, the list of workers, revocation. Every call needs the operator token."""

from __future__ import annotations

import time

from ashao.v1 import operator_pb2, operator_pb2_grpc
from core.grpc.context import Callers, Ctx, bearer
from core.identity.directory import Directory
from core.identity.principal import require_operator
from core.jobs.system import JobSystem


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    """What the operator controls."""

    def __init__(self, *, jobs: JobSystem, directory: Directory, callers: Callers) -> None:
        self._jobs = jobs
        self._directory = directory
        self._callers = callers

    async def _operator(self, context: Ctx) -> None:
        require_operator(await self._directory.resolve(bearer(context), self._callers.ip(context)))

    async def IssueJoinToken(
        self, request: operator_pb2.IssueJoinTokenRequest, context: Ctx
    ) -> operator_pb2.IssueJoinTokenResponse:
        """A new join token."""
        await self._operator(context)
        token, token_id, expires = await self._jobs.registry.joining.issue(
            label=request.label, uses=request.uses, ttl_s=request.ttl_s
        )
        return operator_pb2.IssueJoinTokenResponse(join_token=token, id=token_id, expires_at_ms=expires)

    async def RevokeJoinToken(
        self, request: operator_pb2.RevokeJoinTokenRequest, context: Ctx
    ) -> operator_pb2.RevokeJoinTokenResponse:
        """Revoke a join token."""
        await self._operator(context)
        await self._jobs.registry.joining.revoke(request.id)
        return operator_pb2.RevokeJoinTokenResponse()

    async def ListWorkers(
        self, request: operator_pb2.ListWorkersRequest, context: Ctx
    ) -> operator_pb2.ListWorkersResponse:
        """Every registered worker."""
        await self._operator(context)
        entries = []
        now = time.monotonic()
        for w in self._jobs.registry:
            conn = w.connection
            entries.append(
                operator_pb2.WorkerEntry(
                    worker_id=w.id,
                    name=w.name,
                    owner_address=w.owner_address,
                    tiers=sorted(w.tiers),
                    slots=conn.slots if conn is not None else w.slots,
                    trusted_slots=w.standing.trusted(conn.slots if conn is not None else w.slots),
                    running=len(conn.running) if conn is not None else len(w.pulled),
                    connected=conn is not None,
                    tokens_per_sec=w.standing.speed,
                    answer_tokens_per_sec=w.standing.pace,
                    delivered=w.standing.delivered,
                    failed=w.standing.failed,
                    draining=conn is not None and conn.draining,
                    idle_s=now - conn.last_assigned if conn is not None and conn.last_assigned else 0.0,
                )
            )
        return operator_pb2.ListWorkersResponse(workers=entries)

    async def RevokeWorker(
        self, request: operator_pb2.RevokeWorkerRequest, context: Ctx
    ) -> operator_pb2.RevokeWorkerResponse:
        """Revoke a worker: its token stops working and its stream is closed."""
        await self._operator(context)
        await self._jobs.revoke_worker(request.worker_id)
        return operator_pb2.RevokeWorkerResponse()
