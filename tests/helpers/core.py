"""A real core in the test's event loop (grpc.aio on port 0, SQLite in a temporary directory), raw gRPC
clients of it, and a worker driven message by message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from nacl.signing import SigningKey

from ashao.v1 import (
    account_pb2,
    account_pb2_grpc,
    chat_pb2,
    chat_pb2_grpc,
    network_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    treasury_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from ashao_common.base58 import b58encode
from core.app import CoreApp
from core.config import CoreSettings


def core_settings(tmp_path: Path, **overrides: Any) -> CoreSettings:
    """Settings for a core on an ephemeral loopback port with its data in ``tmp_path``."""
    base: dict[str, Any] = {
        "grpc_addr": "127.0.0.1:0",
        "data_dir": tmp_path / "data",
        "db_synchronous": "NORMAL",
        "heartbeat_interval_ms": 5000,
        # Workers of most tests run their claimed slots at once (tests of probation set it back).
        "worker_probation_slots": 64,
    }
    base.update(overrides)
    return CoreSettings(**base)


class Core:
    """A started core plus stubs on one channel."""

    def __init__(self, app: CoreApp, channel: grpc.aio.Channel) -> None:
        self.app = app
        self.channel = channel
        self.chat = chat_pb2_grpc.ChatServiceStub(channel)
        self.workers = worker_pb2_grpc.WorkerServiceStub(channel)
        self.network = network_pb2_grpc.NetworkServiceStub(channel)
        self.accounts = account_pb2_grpc.AccountServiceStub(channel)
        self.treasury = treasury_pb2_grpc.TreasuryServiceStub(channel)
        self.operators = operator_pb2_grpc.OperatorServiceStub(channel)
        self._join_token: str | None = None

    async def send(
        self, content: str = "hello", tier: str = "free", conversation_id: str = "", metadata: Any = ()
    ) -> tuple[str, str]:
        r = await self.chat.SendMessage(
            chat_pb2.SendMessageRequest(tier=tier, content=content, conversation_id=conversation_id),
            metadata=metadata,
        )
        return r.job_id, r.conversation_id

    async def sign_in(self, credits: int = 0) -> tuple[tuple[str, str], ...]:
        """A new wallet signs in (and is granted ``credits`` by the operator); returns its call metadata."""
        key = SigningKey.generate()
        address = b58encode(bytes(key.verify_key))
        challenge = await self.accounts.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address))
        signature = b58encode(key.sign(challenge.message.encode()).signature)
        r = await self.accounts.SignIn(
            account_pb2.SignInRequest(address=address, message=challenge.message, signature=signature)
        )
        md = (("authorization", f"Bearer {r.session_token}"),)
        if credits:
            await self.accounts.GrantCredits(
                account_pb2.GrantCreditsRequest(user=r.user.id, amount=credits), metadata=self.operator
            )
        return md

    @property
    def operator(self) -> tuple[tuple[str, str], ...]:
        token = (self.app.settings.data_dir / "operator.token").read_text().strip()
        return (("authorization", f"Bearer {token}"),)

    async def join_token(self, uses: int = 1000) -> str:
        """A join token from the operator (workers register with it)."""
        if self._join_token is None:
            r = await self.operators.IssueJoinToken(
                operator_pb2.IssueJoinTokenRequest(label="tests", uses=uses), metadata=self.operator
            )
            self._join_token = r.join_token
        return self._join_token

    async def register(self, slots: int = 2, tiers: tuple[str, ...] = ()) -> tuple[str, str]:
        r = await self.workers.RegisterWorker(
            worker_pb2.RegisterWorkerRequest(
                name="t", slots=slots, tiers=tiers, join_token=await self.join_token()
            )
        )
        return r.worker_id, r.worker_token


async def start_core(settings: CoreSettings, **app_options: Any) -> Core:
    """A started core (``app_options``: further arguments of ``CoreApp``, e.g. a tracer)."""
    app = CoreApp(settings, **app_options)
    await app.start()
    channel = grpc.aio.insecure_channel(app.address)
    return Core(app, channel)


async def stop_core(core: Core) -> None:
    await core.channel.close()
    await core.app.shutdown(grace=0.5)


class StreamWorker:
    """A worker holding a Connect stream, driven by the test message by message."""

    def __init__(
        self,
        core: Core,
        token: str,
        *,
        slots: int = 2,
        tiers: tuple[str, ...] = (),
        continues_prefix: bool = True,
    ) -> None:
        self.call = core.workers.Connect(metadata=(("authorization", f"Bearer {token}"),))
        self.slots = slots
        self.tiers = tiers
        self.continues_prefix = continues_prefix
        self.worker_id = ""

    async def hello(self) -> None:
        hello = worker_pb2.WorkerHello(
            slots=self.slots, tiers=self.tiers, continues_prefix=self.continues_prefix
        )
        await self.call.write(worker_pb2.ConnectRequest(hello=hello))
        first = await asyncio.wait_for(self.call.read(), 5)
        assert first.HasField("welcome")
        self.worker_id = first.welcome.worker_id

    async def next(self, timeout: float = 5) -> worker_pb2.ConnectResponse:
        msg = await asyncio.wait_for(self.call.read(), timeout)
        assert msg is not grpc.aio.EOF, "stream ended"
        return msg  # type: ignore[no-any-return]

    async def assignment(self, timeout: float = 5) -> worker_pb2.Assignment:
        msg = await self.next(timeout)
        assert msg.HasField("assignment"), msg
        return msg.assignment

    async def tokens(self, job_id: str, tokens: list[str], offset: int | None = None) -> None:
        jt = worker_pb2.JobTokens(job_id=job_id, tokens=tokens)
        if offset is not None:
            jt.offset = offset
        await self.call.write(worker_pb2.ConnectRequest(tokens=worker_pb2.TokenBatch(jobs=[jt])))

    async def complete(self, job_id: str) -> None:
        await self.call.write(worker_pb2.ConnectRequest(complete=worker_pb2.JobComplete(job_id=job_id)))

    async def fail(self, job_id: str, retryable: bool = True) -> None:
        await self.call.write(
            worker_pb2.ConnectRequest(
                failed=worker_pb2.JobFailed(job_id=job_id, message="boom", retryable=retryable)
            )
        )

    async def heartbeat(self) -> None:
        await self.call.write(
            worker_pb2.ConnectRequest(heartbeat=worker_pb2.WorkerHeartbeat(tokens_per_sec=1.0))
        )

    def cancel(self) -> None:
        self.call.cancel()


async def connect_worker(
    core: Core, *, slots: int = 2, tiers: tuple[str, ...] = (), continues_prefix: bool = True
) -> StreamWorker:
    _, token = await core.register(slots=slots, tiers=tiers)
    w = StreamWorker(core, token, slots=slots, tiers=tiers, continues_prefix=continues_prefix)
    await w.hello()
    return w


async def collect(
    core: Core, job_id: str, after_seq: int = 0, timeout: float = 10, metadata: Any = ()
) -> list[Any]:
    """Every StreamJob event of a job until it ends, as (seq, kind, payload)."""
    out: list[Any] = []

    async def run() -> None:
        request = chat_pb2.StreamJobRequest(job_id=job_id, after_seq=after_seq)
        async for ev in core.chat.StreamJob(request, metadata=metadata):
            kind = ev.WhichOneof("event")
            if kind == "chunk":
                out.extend((ev.seq + i, "token", t) for i, t in enumerate(ev.chunk.tokens))
            elif kind == "done":
                out.append((ev.seq, "done", ev.done.tokens))
            else:
                out.append((ev.seq, "error", ev.error.reason))

    await asyncio.wait_for(run(), timeout)
    return out
