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
    worker_pb2,
    worker_pb2_grpc,
)
from core.accounts import AccountService
from core.auth import Accounts, Principal
from core.config import CoreSettings
from core.coordinator import Coordinator, JobSnapshot, WorkerInfo
from core.errors import AshaoError, InvalidArgumentError
from core.fanout import Accepted, Follower, Item, Multiplexer, Rejected
from core.images import ImageService
from core.jobs import Job, JobState, StoredImage
from core.relay import Prompt, Relay, RelayDocuments, Signed
from core.streams import Events
from core.treasury import Position, Snapshot, Treasury

log = logging.getLogger("ashao.core.servicers")

Ctx = grpc.aio.ServicerContext[Any, Any]

_STATE = {
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
        state=_STATE[job.state],
        attempts=job.attempts,
        worker_id=job.worker_id,
        tokens=job.tokens,
        created_at_ms=job.created_at_ms,
        error=job.error,
    )


def _messages(job: Job) -> list[common_pb2.ChatMessage]:
    return [common_pb2.ChatMessage(role=r, content=c) for r, c in job.messages]


def _prefix(job: Job) -> str:
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
                    accepted=chat_pb2.WatchAccepted(state=_STATE[item.state], tokens=item.tokens),
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


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Workers: registration, the push stream, the pull path."""

    def __init__(self, *, coordinator: Coordinator, settings: CoreSettings) -> None:
        self._c = coordinator
        self._settings = settings

    def _worker(self, context: Ctx) -> WorkerInfo:
        return self._c.authenticate(bearer(context))

    async def RegisterWorker(
        self, request: worker_pb2.RegisterWorkerRequest, context: Ctx
    ) -> worker_pb2.RegisterWorkerResponse:
        """Create a worker."""
        wid, token, tiers = await self._c.register_worker(
            name=request.name, tiers=list(request.tiers), slots=request.slots
        )
        return worker_pb2.RegisterWorkerResponse(worker_id=wid, worker_token=token, tiers=tiers)

    async def Connect(self, request_iterator: Any, context: Ctx) -> None:  # type: ignore[override]
        """The push path: hello, then heartbeats/tokens/results in, assignments/cancels out."""
        info = self._worker(context)
        first = await context.read()
        if (
            first is grpc.aio.EOF
            or not isinstance(first, worker_pb2.ConnectRequest)
            or not first.HasField("hello")
        ):
            raise InvalidArgumentError("hello: the first message on Connect must be hello", field="hello")
        out: asyncio.Queue[worker_pb2.ConnectResponse] = asyncio.Queue()
        closed = asyncio.Event()

        def push(job_id: str) -> None:
            job = self._c.assignment(job_id)
            if job is None:
                return
            image = None
            if job.image is not None:
                i = job.image
                image = worker_pb2.ImageParams(
                    prompt=i.prompt,
                    style=i.style,
                    aspect=i.aspect,
                    width=i.width,
                    height=i.height,
                    nsfw=i.nsfw,
                )
            out.put_nowait(
                worker_pb2.ConnectResponse(
                    assignment=worker_pb2.Assignment(
                        image=image,
                        job_id=job.id,
                        tier=job.tier,
                        model=job.model,
                        messages=_messages(job),
                        max_tokens=job.max_tokens - len(job.log.tokens),
                        prefix=_prefix(job),
                        attempt=job.attempts,
                    )
                )
            )

        def cancel(job_id: str, reason: str) -> None:
            out.put_nowait(
                worker_pb2.ConnectResponse(cancel=worker_pb2.CancelJob(job_id=job_id, reason=reason))
            )

        view = self._c.attach(
            info,
            slots=first.hello.slots,
            tiers=list(first.hello.tiers),
            push=push,
            cancel=cancel,
            close=closed.set,
        )
        reason = "stream closed"
        try:
            await context.write(
                worker_pb2.ConnectResponse(
                    welcome=worker_pb2.Welcome(
                        worker_id=info.id,
                        heartbeat_interval_ms=self._settings.heartbeat_interval_ms,
                        flush_interval_ms=self._settings.flush_interval_ms,
                    )
                )
            )

            def reject(job_id: str, err: AshaoError) -> None:
                out.put_nowait(
                    worker_pb2.ConnectResponse(
                        rejected=worker_pb2.JobRejected(
                            job_id=job_id, code=err.code.name, message=err.message
                        )
                    )
                )

            async def read_loop() -> None:
                while (msg := await context.read()) is not grpc.aio.EOF:
                    assert isinstance(msg, worker_pb2.ConnectRequest)
                    self._c.touch(info)
                    kind = msg.WhichOneof("msg")
                    if kind == "tokens":
                        for jt in msg.tokens.jobs:
                            try:
                                self._c.publish(
                                    info,
                                    jt.job_id,
                                    jt.offset if jt.HasField("offset") else None,
                                    list(jt.tokens),
                                )
                            except AshaoError as err:
                                reject(jt.job_id, err)
                    elif kind == "heartbeat":
                        self._c.heartbeat(info, msg.heartbeat.tokens_per_sec)
                    elif kind == "complete":
                        try:
                            self._c.complete(info, msg.complete.job_id)
                        except AshaoError as err:
                            reject(msg.complete.job_id, err)
                    elif kind == "failed":
                        f = msg.failed
                        try:
                            self._c.fail(info, f.job_id, f.message, f.retryable)
                        except AshaoError as err:
                            reject(f.job_id, err)
                    elif kind == "drain":
                        self._c.drain(view)
                    elif kind == "image":
                        r = msg.image
                        try:
                            await self._c.complete_image(info, r.job_id, r.data, r.mime_type)
                        except AshaoError as err:
                            reject(r.job_id, err)

            async def write_loop() -> None:
                while True:
                    await context.write(await out.get())

            tasks = [
                asyncio.create_task(read_loop(), name=f"ashao-worker-read-{info.id}"),
                asyncio.create_task(write_loop(), name=f"ashao-worker-write-{info.id}"),
                asyncio.create_task(closed.wait(), name=f"ashao-worker-closed-{info.id}"),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if tasks[2] in done:
                    reason = "missed heartbeats"
                for t in done:
                    if t is not tasks[2] and not t.cancelled() and t.exception() is not None:
                        exc = t.exception()
                        reason = f"stream error: {exc!r}"
                        if isinstance(exc, AshaoError):
                            raise exc
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._c.detach(view, reason=reason)

    async def ClaimJob(
        self, request: worker_pb2.ClaimJobRequest, context: Ctx
    ) -> worker_pb2.ClaimJobResponse:
        """Take the next queued job of a tier, if any."""
        info = self._worker(context)
        job = self._c.claim(info, request.tier)
        if job is None:
            return worker_pb2.ClaimJobResponse()
        return worker_pb2.ClaimJobResponse(
            job=job_to_proto(self._c.snapshot(job)),
            messages=_messages(job),
            prefix=_prefix(job),
            max_tokens=job.max_tokens - len(job.log.tokens),
        )

    async def PublishTokens(
        self, request: worker_pb2.PublishTokensRequest, context: Ctx
    ) -> worker_pb2.PublishTokensResponse:
        """Publish tokens of a job assigned to this worker."""
        info = self._worker(context)
        jt = request.tokens
        if not jt.job_id:
            raise InvalidArgumentError("jobId: required", field="jobId")
        accepted = self._c.publish(
            info, jt.job_id, jt.offset if jt.HasField("offset") else None, list(jt.tokens)
        )
        return worker_pb2.PublishTokensResponse(accepted=accepted)

    async def CompleteJob(
        self, request: worker_pb2.CompleteJobRequest, context: Ctx
    ) -> worker_pb2.CompleteJobResponse:
        """Finish a job assigned to this worker."""
        info = self._worker(context)
        return worker_pb2.CompleteJobResponse(tokens=self._c.complete(info, request.job_id))

    async def FailJob(self, request: worker_pb2.FailJobRequest, context: Ctx) -> worker_pb2.FailJobResponse:
        """Give up a job assigned to this worker."""
        info = self._worker(context)
        state = self._c.fail(info, request.job_id, request.message, request.retryable)
        return worker_pb2.FailJobResponse(state=_STATE[state])

    async def Heartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Ctx
    ) -> worker_pb2.HeartbeatResponse:
        """Liveness and throughput of a pull worker."""
        info = self._worker(context)
        self._c.heartbeat(info, request.tokens_per_sec)
        return worker_pb2.HeartbeatResponse(heartbeat_interval_ms=self._settings.heartbeat_interval_ms)

    async def GetWorkerAccount(
        self, request: worker_pb2.GetWorkerAccountRequest, context: Ctx
    ) -> worker_pb2.GetWorkerAccountResponse:
        """The calling worker's earnings and stats."""
        info = self._worker(context)
        a = await self._c.worker_account(info)
        return worker_pb2.GetWorkerAccountResponse(
            worker_id=info.id,
            name=info.name,
            earnings=a.earnings,
            jobs_completed=a.jobs_completed,
            tokens_generated=a.tokens_generated,
            tokens_per_sec=info.tokens_per_sec,
            connected=info.view is not None,
        )


class NetworkServicer(network_pb2_grpc.NetworkServiceServicer):
    """Network figures."""

    def __init__(self, *, coordinator: Coordinator) -> None:
        self._c = coordinator

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
