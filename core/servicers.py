"""The gRPC servicers: decode the request, call the coordinator, encode the answer. Nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import grpc

from ashao.v1 import (
    account_pb2,
    account_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    common_pb2,
    image_pb2,
    image_pb2_grpc,
    network_pb2,
    network_pb2_grpc,
    relay_pb2,
    relay_pb2_grpc,
    treasury_pb2,
    treasury_pb2_grpc,
)
from core.accounts import AccountService
from core.auth import Accounts, Principal
from core.config import CoreSettings
from core.coordinator import MAX_SLOTS, Coordinator, JobSnapshot
from core.economics import TIERS, TIERS_BY_PRIORITY
from core.errors import AshaoError, as_domain_error
from core.fanout import Accepted, Follower, Item, Multiplexer, Rejected
from core.images import ImageService
from core.jobs import Job, JobState, StoredImage
from core.relay import Prompt, Relay, RelayDocuments, Signed
from core.streams import Events
from core.treasury import Position, Snapshot, Treasury

log = logging.getLogger("ashao.core.servicers")

Ctx = grpc.aio.ServicerContext[Any, Any]

JOB_STATES = {
    JobState.QUEUED: common_pb2.JOB_STATE_QUEUED,
    JobState.ASSIGNED: common_pb2.JOB_STATE_ASSIGNED,
    JobState.STREAMING: common_pb2.JOB_STATE_STREAMING,
    JobState.DONE: common_pb2.JOB_STATE_DONE,
    JobState.FAILED: common_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: common_pb2.JOB_STATE_CANCELLED,
    JobState.EXPIRED: common_pb2.JOB_STATE_EXPIRED,
}


def _metadata(context: Ctx, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


def client_ip(context: Ctx) -> str:
    """The caller's address: the client IP a relay (the facade) forwards, else the gRPC peer."""
    return _metadata(context, "x-ashao-client-ip") or context.peer()


def bearer(context: Ctx) -> str:
    """The bearer token of a call, or ''."""
    value = _metadata(context, "authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def job_to_proto(job: JobSnapshot) -> common_pb2.Job:
    """The wire form of a job snapshot."""
    return common_pb2.Job(
        id=job.id,
        tier=job.tier,
        model=job.model,
        conversation_id=job.conversation_id,
        state=JOB_STATES[job.state],
        attempts=job.attempts,
        worker_id=job.worker_id,
        tokens=job.tokens,
        created_at_ms=job.created_at_ms,
        error=job.error,
    )


def messages_of(job: Job) -> list[common_pb2.ChatMessage]:
    """The conversation a job carries to its worker."""
    return [common_pb2.ChatMessage(role=r, content=c) for r, c in job.messages]


def prefix_of(job: Job) -> str:
    """Text earlier attempts of a job already delivered (a new attempt continues after it)."""
    return job.log.text if job.attempt_base else ""


def _events_to_sub(sub_id: int, ev: Events, out: list[chat_pb2.SubscriptionEvent]) -> None:
    if ev.tokens:
        out.append(
            chat_pb2.SubscriptionEvent(
                sub_id=sub_id, seq=ev.first_seq, chunk=common_pb2.TokenChunk(tokens=ev.tokens)
            )
        )
    t = ev.terminal
    if t is not None:
        if t.kind == "done":
            out.append(
                chat_pb2.SubscriptionEvent(
                    sub_id=sub_id, seq=ev.terminal_seq, done=common_pb2.JobDone(tokens=t.tokens)
                )
            )
        else:
            out.append(
                chat_pb2.SubscriptionEvent(
                    sub_id=sub_id,
                    seq=ev.terminal_seq,
                    error=common_pb2.JobError(message=t.message, reason=t.reason),
                )
            )


def encode_items(items: list[Item]) -> chat_pb2.SubscribeResponse:
    """One Subscribe message for a batch of items."""
    out: list[chat_pb2.SubscriptionEvent] = []
    for item in items:
        if isinstance(item, Accepted):
            out.append(
                chat_pb2.SubscriptionEvent(
                    sub_id=item.sub_id,
                    accepted=chat_pb2.WatchAccepted(state=JOB_STATES[item.state], tokens=item.tokens),
                )
            )
        elif isinstance(item, Rejected):
            out.append(
                chat_pb2.SubscriptionEvent(
                    sub_id=item.sub_id, rejected=chat_pb2.WatchRejected(code=item.code, message=item.message)
                )
            )
        else:
            _events_to_sub(item.sub_id, item.events, out)
    return chat_pb2.SubscribeResponse(events=out)


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """Chat: send, follow, read."""

    def __init__(self, *, coordinator: Coordinator, accounts: Accounts, settings: CoreSettings) -> None:
        self._c = coordinator
        self._accounts = accounts
        self._limit = settings.subscribe_max_tokens_per_message

    def _principal(self, context: Ctx) -> Principal:
        return self._accounts.resolve(bearer(context), client_ip(context))

    def _watcher(self, watch: chat_pb2.Watch, context: Ctx) -> Principal:
        """Who a watch is for: the end user a relay names, else the stream's own caller."""
        if watch.credential or watch.client_ip:
            return self._accounts.resolve(watch.credential, watch.client_ip or client_ip(context))
        return self._principal(context)

    async def SendMessage(
        self, request: chat_pb2.SendMessageRequest, context: Ctx
    ) -> chat_pb2.SendMessageResponse:
        """Persist the message and queue its job."""
        job_id, conv = await self._c.send(
            tier=request.tier,
            content=request.content,
            conversation_id=request.conversation_id,
            principal=self._principal(context),
        )
        return chat_pb2.SendMessageResponse(job_id=job_id, conversation_id=conv)

    async def SendMany(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """Sends relayed for many end users over one stream; results as each becomes durable."""
        await context.send_initial_metadata(())
        ready: list[chat_pb2.SendResult] = []
        wake = asyncio.Event()
        running: set[asyncio.Task[None]] = set()

        async def one(item: chat_pb2.RelayedSend) -> None:
            try:
                principal = self._accounts.resolve(item.credential, item.client_ip or client_ip(context))
                r = item.send
                job_id, conv = await self._c.send(
                    tier=r.tier, content=r.content, conversation_id=r.conversation_id, principal=principal
                )
                result = chat_pb2.SendResult(
                    id=item.id, sent=chat_pb2.SendMessageResponse(job_id=job_id, conversation_id=conv)
                )
            except Exception as exc:  # every failure is the caller's answer, never the stream's end
                err = as_domain_error(exc)
                result = chat_pb2.SendResult(
                    id=item.id,
                    error=chat_pb2.CallError(
                        code=err.code.name,
                        message=err.message,
                        reason=err.reason,
                        field=err.field,
                        retry_after_s=err.retry_after_s,
                    ),
                )
            ready.append(result)
            wake.set()

        reading = True

        async def read_requests() -> None:
            nonlocal reading
            try:
                while (req := await context.read()) is not grpc.aio.EOF:
                    assert isinstance(req, chat_pb2.SendManyRequest)
                    for item in req.sends:
                        task = asyncio.create_task(one(item))
                        running.add(task)
                        task.add_done_callback(running.discard)
            finally:
                reading = False
                wake.set()

        reader = asyncio.create_task(read_requests(), name="ashao-sendmany-read")
        try:
            while reading or running or ready:
                await wake.wait()
                wake.clear()
                if ready:
                    batch = ready[:]
                    ready.clear()
                    await context.write(chat_pb2.SendManyResponse(results=batch))
        finally:
            reader.cancel()
            for t in running:
                t.cancel()
            await asyncio.gather(reader, *running, return_exceptions=True)

    async def StreamJob(self, request: chat_pb2.StreamJobRequest, context: Ctx):  # type: ignore[no-untyped-def]
        """One job's events after ``after_seq``, until it ends."""
        job_log, _ = await self._c.open_log(request.job_id, self._principal(context))
        follower = Follower(job_log, request.after_seq, max_tokens_per_message=self._limit)
        try:
            while (ev := await follower.next()) is not None:
                if ev.tokens:
                    yield chat_pb2.StreamJobResponse(
                        job_id=request.job_id, seq=ev.first_seq, chunk=common_pb2.TokenChunk(tokens=ev.tokens)
                    )
                t = ev.terminal
                if t is not None:
                    if t.kind == "done":
                        yield chat_pb2.StreamJobResponse(
                            job_id=request.job_id,
                            seq=ev.terminal_seq,
                            done=common_pb2.JobDone(tokens=t.tokens),
                        )
                    else:
                        yield chat_pb2.StreamJobResponse(
                            job_id=request.job_id,
                            seq=ev.terminal_seq,
                            error=common_pb2.JobError(message=t.message, reason=t.reason),
                        )
        finally:
            follower.close()

    async def Subscribe(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """Many jobs over one stream."""
        mux = Multiplexer(self._c.open_log, max_tokens_per_message=self._limit)
        await context.send_initial_metadata(())  # tells the relay at once that its stream is up

        async def read_requests() -> None:
            try:
                while (req := await context.read()) is not grpc.aio.EOF:
                    assert isinstance(req, chat_pb2.SubscribeRequest)
                    action = req.WhichOneof("action")
                    if action == "watch":
                        w = req.watch
                        await mux.watch(
                            w.sub_id, w.job_id, w.after_seq, functools.partial(self._watcher, w, context)
                        )
                    elif action == "unwatch":
                        mux.unwatch(req.unwatch.sub_id)
            finally:
                mux.end_input()

        reader = asyncio.create_task(read_requests(), name="ashao-subscribe-read")
        try:
            while items := await mux.next_batch():
                await context.write(encode_items(items))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            mux.close()

    async def GetJob(self, request: chat_pb2.GetJobRequest, context: Ctx) -> chat_pb2.GetJobResponse:
        """One job's state."""
        return chat_pb2.GetJobResponse(
            job=job_to_proto(await self._c.get_job(request.job_id, self._principal(context)))
        )

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Ctx
    ) -> chat_pb2.GetConversationResponse:
        """A conversation's messages."""
        msgs = await self._c.get_conversation(request.conversation_id, self._principal(context))
        return chat_pb2.GetConversationResponse(
            conversation_id=request.conversation_id,
            messages=[common_pb2.ChatMessage(role=r, content=c) for r, c in msgs],
        )


class NetworkServicer(network_pb2_grpc.NetworkServiceServicer):
    """Network figures."""

    def __init__(self, *, coordinator: Coordinator, settings: CoreSettings) -> None:
        self._c = coordinator
        self._settings = settings

    async def GetNetworkInfo(
        self, request: network_pb2.GetNetworkInfoRequest, context: Ctx
    ) -> network_pb2.GetNetworkInfoResponse:
        """The tiers and the limits clients and workers must respect."""
        return network_pb2.GetNetworkInfoResponse(
            tiers=[
                network_pb2.TierInfo(
                    name=t.name,
                    model=t.model,
                    kind=network_pb2.TIER_KIND_CHAT if t.chat else network_pb2.TIER_KIND_IMAGE,
                    credit_cost=t.credit_cost,
                    max_tokens=t.max_tokens,
                    priority=t.priority,
                )
                for t in (TIERS[name] for name in TIERS_BY_PRIORITY)
            ],
            max_worker_slots=MAX_SLOTS,
            max_content_chars=self._settings.max_content_chars,
        )

    async def GetStats(
        self, request: network_pb2.GetStatsRequest, context: Ctx
    ) -> network_pb2.GetStatsResponse:
        """Live network figures."""
        s = self._c.stats()
        return network_pb2.GetStatsResponse(
            active_workers=s.active_workers,
            queue_depth=s.queue_depth,
            jobs_completed=s.jobs_completed,
            tokens_per_sec=s.tokens_per_sec,
        )


def _user(u_id: str, address: str, created_at_ms: int = 0) -> account_pb2.User:
    return account_pb2.User(id=u_id, address=address, created_at_ms=created_at_ms)


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    """Sign-in, sessions, API keys, credits."""

    def __init__(self, *, service: AccountService) -> None:
        self._s = service

    def _principal(self, context: Ctx) -> Principal:
        return self._s.accounts.resolve(bearer(context), client_ip(context))

    async def GetSignInMessage(
        self, request: account_pb2.GetSignInMessageRequest, context: Ctx
    ) -> account_pb2.GetSignInMessageResponse:
        """The exact message to sign."""
        message, nonce, expires = self._s.accounts.challenge(request.address)
        return account_pb2.GetSignInMessageResponse(
            message=message, nonce=nonce, expires_at_ms=int(expires * 1000)
        )

    async def SignIn(self, request: account_pb2.SignInRequest, context: Ctx) -> account_pb2.SignInResponse:
        """Verify the signed message and open a session."""
        user_id, token, expires = await self._s.sign_in(request.address, request.message, request.signature)
        return account_pb2.SignInResponse(
            user=_user(user_id, request.address), session_token=token, expires_at_ms=int(expires * 1000)
        )

    async def SignOut(self, request: account_pb2.SignOutRequest, context: Ctx) -> account_pb2.SignOutResponse:
        """End the caller's session."""
        await self._s.sign_out(bearer(context))
        return account_pb2.SignOutResponse()

    async def WhoAmI(self, request: account_pb2.WhoAmIRequest, context: Ctx) -> account_pb2.WhoAmIResponse:
        """The signed-in user."""
        uid = self._s.accounts.require_user(self._principal(context))
        return account_pb2.WhoAmIResponse(
            user=_user(uid, self._s.accounts.address_of(uid)), credits=self._s.credits(uid)
        )

    async def CreateApiKey(
        self, request: account_pb2.CreateApiKeyRequest, context: Ctx
    ) -> account_pb2.CreateApiKeyResponse:
        """A new API key for the signed-in user."""
        uid = self._s.accounts.require_user(self._principal(context))
        key_id, secret, created = await self._s.create_api_key(uid, request.name)
        return account_pb2.CreateApiKeyResponse(
            key=account_pb2.ApiKey(id=key_id, name=request.name, created_at_ms=created), secret=secret
        )

    async def ListApiKeys(
        self, request: account_pb2.ListApiKeysRequest, context: Ctx
    ) -> account_pb2.ListApiKeysResponse:
        """The caller's keys."""
        uid = self._s.accounts.require_user(self._principal(context))
        keys = await self._s.list_api_keys(uid)
        return account_pb2.ListApiKeysResponse(
            keys=[account_pb2.ApiKey(id=k, name=n, created_at_ms=c, revoked_at_ms=r) for k, n, c, r in keys]
        )

    async def RevokeApiKey(
        self, request: account_pb2.RevokeApiKeyRequest, context: Ctx
    ) -> account_pb2.RevokeApiKeyResponse:
        """Revoke one of the caller's keys."""
        uid = self._s.accounts.require_user(self._principal(context))
        await self._s.accounts.revoke_api_key(uid, request.key_id)
        return account_pb2.RevokeApiKeyResponse()

    async def GetCredits(
        self, request: account_pb2.GetCreditsRequest, context: Ctx
    ) -> account_pb2.GetCreditsResponse:
        """The caller's credits."""
        uid = self._s.accounts.require_user(self._principal(context))
        return account_pb2.GetCreditsResponse(credits=self._s.credits(uid))

    async def GrantCredits(
        self, request: account_pb2.GrantCreditsRequest, context: Ctx
    ) -> account_pb2.GrantCreditsResponse:
        """Operator only: mint credits to a user."""
        self._s.accounts.require_operator(self._principal(context))
        uid, balance = await self._s.grant(request.user, request.amount, request.memo)
        return account_pb2.GrantCreditsResponse(credits=balance, user_id=uid)


def _snap(s: Snapshot) -> treasury_pb2.TreasurySnapshot:
    return treasury_pb2.TreasurySnapshot(
        at_ms=s.at_ms,
        balance=s.balance,
        total_burned=s.total_burned,
        rewards_paid=s.rewards_paid,
        circulating_supply=s.circulating_supply,
        price=s.price,
    )


def _position(p: Position) -> treasury_pb2.StakingPosition:
    return treasury_pb2.StakingPosition(balance=p.balance, staked=p.staked, rewards=p.rewards)


class TreasuryServicer(treasury_pb2_grpc.TreasuryServiceServicer):
    """Treasury figures and staking."""

    def __init__(self, *, treasury: Treasury, accounts: Accounts) -> None:
        self._t = treasury
        self._accounts = accounts

    def _user(self, context: Ctx) -> str:
        return self._accounts.require_user(self._accounts.resolve(bearer(context), client_ip(context)))

    async def GetTreasury(
        self, request: treasury_pb2.GetTreasuryRequest, context: Ctx
    ) -> treasury_pb2.GetTreasuryResponse:
        """Figures now and the series."""
        limit = min(request.limit or 500, 10_080)
        series = await self._t.series(limit)
        return treasury_pb2.GetTreasuryResponse(
            current=_snap(self._t.current()), series=[_snap(s) for s in series]
        )

    async def Stake(self, request: treasury_pb2.StakeRequest, context: Ctx) -> treasury_pb2.StakeResponse:
        """Stake."""
        pos = await self._t.move_stake(self._user(context), request.amount, stake=True)
        return treasury_pb2.StakeResponse(position=_position(pos))

    async def Unstake(
        self, request: treasury_pb2.UnstakeRequest, context: Ctx
    ) -> treasury_pb2.UnstakeResponse:
        """Unstake."""
        pos = await self._t.move_stake(self._user(context), request.amount, stake=False)
        return treasury_pb2.UnstakeResponse(position=_position(pos))

    async def GetStaking(
        self, request: treasury_pb2.GetStakingRequest, context: Ctx
    ) -> treasury_pb2.GetStakingResponse:
        """The caller's position."""
        return treasury_pb2.GetStakingResponse(
            position=_position(await self._t.position(self._user(context)))
        )


def _image(i: StoredImage) -> image_pb2.Image:
    return image_pb2.Image(
        id=i.id,
        url=i.url,
        prompt=i.prompt,
        style=i.style,
        aspect=i.aspect,
        sha256=i.sha256,
        mime_type=i.mime_type,
    )


class ImageServicer(image_pb2_grpc.ImageServiceServicer):
    """Images."""

    def __init__(self, *, images: ImageService, accounts: Accounts) -> None:
        self._images = images
        self._accounts = accounts

    async def GenerateImage(
        self, request: image_pb2.GenerateImageRequest, context: Ctx
    ) -> image_pb2.GenerateImageResponse:
        """Generate, store and describe an image."""
        principal = self._accounts.resolve(bearer(context), client_ip(context))
        image = await self._images.generate(
            principal, prompt=request.prompt, style=request.style, aspect=request.aspect, nsfw=request.nsfw
        )
        return image_pb2.GenerateImageResponse(image=_image(image))

    async def GetImage(self, request: image_pb2.GetImageRequest, context: Ctx) -> image_pb2.GetImageResponse:
        """A stored image's bytes."""
        image, data = await self._images.get(request.image_id)
        return image_pb2.GetImageResponse(image=_image(image), data=data)


def _signed(s: Signed) -> relay_pb2.SignedDocument:
    return relay_pb2.SignedDocument(body=s.body, signature=s.signature, key_id=s.key_id)


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

    def __init__(self, *, relay: Relay, documents: RelayDocuments, accounts: Accounts) -> None:
        self._relay = relay
        self._docs = documents
        self._accounts = accounts

    def _caller(self, context: Ctx) -> tuple[Principal, str]:
        ip = client_ip(context)
        try:
            return self._accounts.resolve(bearer(context), ip), ip
        except AshaoError as err:
            if self._relay.require_auth:
                err.envelope = {"error": "auth_required", "detail": err.message, "scheme": "Bearer"}
                raise
            return Principal("anonymous", ip=ip), ip

    async def Chat(self, request: relay_pb2.ChatRequest, context: Ctx) -> relay_pb2.ChatResponse:
        """Synchronous chat."""
        principal, ip = self._caller(context)
        signed = await self._relay.chat(principal, ip, _prompt(request))
        return relay_pb2.ChatResponse(envelope=_signed(signed))

    async def ChatStream(self, request: relay_pb2.ChatStreamRequest, context: Ctx):  # type: ignore[no-untyped-def]
        """Streaming chat: admitted, chunks, then done or error."""
        principal, ip = self._caller(context)
        adm = await self._relay.admit(principal, ip, _prompt(request))
        seq = 0
        async with contextlib.aclosing(self._relay.stream(adm)) as events:
            async for kind, value in events:
                seq += 1
                if isinstance(value, Signed):
                    doc = _signed(value)
                    yield (
                        relay_pb2.ChatStreamResponse(seq=seq, done=doc)
                        if kind == "done"
                        else relay_pb2.ChatStreamResponse(seq=seq, error=doc)
                    )
                elif kind == "admitted":
                    yield relay_pb2.ChatStreamResponse(
                        seq=seq, admitted=relay_pb2.RelayAdmitted(model_id=value)
                    )
                else:
                    yield relay_pb2.ChatStreamResponse(seq=seq, chunk=value)

    async def GetDocument(
        self, request: relay_pb2.GetDocumentRequest, context: Ctx
    ) -> relay_pb2.GetDocumentResponse:
        """A status document."""
        return relay_pb2.GetDocumentResponse(document=_signed(await self._docs.get(request.name)))

    async def GetSafetyRecord(
        self, request: relay_pb2.GetSafetyRecordRequest, context: Ctx
    ) -> relay_pb2.GetSafetyRecordResponse:
        """One safety-ledger record."""
        return relay_pb2.GetSafetyRecordResponse(
            record=_signed(await self._docs.safety_record(request.correlation_id))
        )
