"""RelayService: the relay surface's chat, documents and safety records."""

from __future__ import annotations

import contextlib

from ashao.v1 import relay_pb2, relay_pb2_grpc
from core.errors import AshaoError
from core.grpc.context import Callers, Ctx, bearer
from core.identity.directory import Directory
from core.identity.principal import Principal
from core.relay.documents import RelayDocuments
from core.relay.envelopes import Prompt, auth_required
from core.relay.pipeline import Admitted, Relay
from core.relay.signing import Signed


def _prompt(request: relay_pb2.ChatRequest | relay_pb2.ChatStreamRequest) -> Prompt | bytes:
    if request.json_body:
        return request.json_body
    p = request.prompt
    payment = None
    if p.HasField("payment"):
        c = p.payment
        payment = {"address": c.address, "nonce": c.nonce, "price": c.price, "signature": c.signature}
    return Prompt(p.message, p.max_tokens, payment)


class RelayServicer(relay_pb2_grpc.RelayServiceServicer):
    """The relay surface."""

    def __init__(
        self, *, relay: Relay, documents: RelayDocuments, directory: Directory, callers: Callers
    ) -> None:
        self._relay = relay
        self._docs = documents
        self._directory = directory
        self._callers = callers

    async def _caller(self, context: Ctx) -> tuple[Principal, str]:
        ip = self._callers.ip(context)
        try:
            return await self._directory.resolve(bearer(context), ip), ip
        except AshaoError as err:
            if self._relay.require_auth:
                raise auth_required(err.message) from None
            return Principal("anonymous", ip=ip), ip

    async def Chat(self, request: relay_pb2.ChatRequest, context: Ctx) -> relay_pb2.ChatResponse:
        """Synchronous chat."""
        principal, ip = await self._caller(context)
        signed, waited_s = await self._relay.chat(principal, ip, _prompt(request))
        return relay_pb2.ChatResponse(envelope=signed.to_proto(), provider_wait_ms=waited_s * 1000)

    async def ChatStream(self, request: relay_pb2.ChatStreamRequest, context: Ctx):  # type: ignore[no-untyped-def]
        """Streaming chat: admitted, pieces of text (batched), then done or error."""
        principal, ip = await self._caller(context)
        adm = await self._relay.admit(principal, ip, _prompt(request))
        seq = 1
        async with contextlib.aclosing(self._relay.stream(adm)) as events:
            async for kind, value in events:
                if isinstance(value, Signed):
                    doc = value.to_proto()
                    yield (
                        relay_pb2.ChatStreamResponse(seq=seq, done=doc)
                        if kind == "done"
                        else relay_pb2.ChatStreamResponse(seq=seq, error=doc)
                    )
                    seq += 1
                elif isinstance(value, Admitted):
                    admitted = relay_pb2.RelayAdmitted(
                        model_id=value.model_id, provider_wait_ms=value.provider_wait_s * 1000
                    )
                    yield relay_pb2.ChatStreamResponse(seq=seq, admitted=admitted)
                    seq += 1
                elif len(value) == 1:
                    yield relay_pb2.ChatStreamResponse(seq=seq, chunk=value[0])
                    seq += 1
                else:
                    yield relay_pb2.ChatStreamResponse(seq=seq, pieces=relay_pb2.TextPieces(texts=value))
                    seq += len(value)

    async def GetDocument(
        self, request: relay_pb2.GetDocumentRequest, context: Ctx
    ) -> relay_pb2.GetDocumentResponse:
        """A status document."""
        return relay_pb2.GetDocumentResponse(document=(await self._docs.get(request.name)).to_proto())

    async def GetSafetyRecord(
        self, request: relay_pb2.GetSafetyRecordRequest, context: Ctx
    ) -> relay_pb2.GetSafetyRecordResponse:
        """One safety-ledger record."""
        return relay_pb2.GetSafetyRecordResponse(
            record=(await self._docs.safety_record(request.correlation_id)).to_proto()
        )
