"""What the ledger costs on the send path: priced-tier sends/s vs free-tier sends/s, side by side.

One core process; closed-loop gRPC senders in this process. Rounds alternate between the free tier
(anonymous, no ledger rows) and the basic tier (signed in; each send reserves credits in escrow
through the ledger in the same unit), so both see the same machine conditions.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import grpc
from nacl.signing import SigningKey

from ashao.v1 import account_pb2, account_pb2_grpc, chat_pb2, chat_pb2_grpc
from ashao_cli.devnet import LocalNetwork
from ashao_common.base58 import b58encode
from bench.common import run_async
from tests.helpers.net import free_port


async def _sign_in(channel: grpc.aio.Channel, data_dir: Path) -> tuple[tuple[str, str], ...]:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    key = SigningKey.generate()
    address = b58encode(bytes(key.verify_key))
    msg = (await stub.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address))).message
    r = await stub.SignIn(
        account_pb2.SignInRequest(
            address=address, message=msg, signature=b58encode(key.sign(msg.encode()).signature)
        )
    )
    op = (("authorization", "Bearer " + (data_dir / "operator.token").read_text().strip()),)
    await stub.GrantCredits(account_pb2.GrantCreditsRequest(user=r.user.id, amount=10**9), metadata=op)
    return (("authorization", f"Bearer {r.session_token}"),)


async def _round(
    chat: chat_pb2_grpc.ChatServiceStub, tier: str, md: object, clients: int, seconds: float
) -> float:
    deadline = time.perf_counter() + seconds
    count = 0

    async def client() -> None:
        nonlocal count
        req = chat_pb2.SendMessageRequest(tier=tier, content="ledger bench")
        while time.perf_counter() < deadline:
            await chat.SendMessage(req, metadata=md)
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - t0)


async def _run(addr: str, data_dir: Path, clients: int, seconds: float, rounds: int) -> dict[str, float]:
    channel = grpc.aio.insecure_channel(addr)
    chat = chat_pb2_grpc.ChatServiceStub(channel)
    user = await _sign_in(channel, data_dir)
    await _round(chat, "free", (), clients, 1.0)  # warm-up
    free, priced = [], []
    for _ in range(rounds):
        free.append(await _round(chat, "free", (), clients, seconds))
        priced.append(await _round(chat, "basic", user, clients, seconds))
    await channel.close()
    f, p = sum(free) / len(free), sum(priced) / len(priced)
    return {
        "free_sends_per_s": f,
        "priced_sends_per_s": p,
        "priced_over_free": p / f,
        "ledger_cost_pct": (1 - p / f) * 100,
    }


def run(clients: int = 32, seconds: float = 3.0, rounds: int = 3) -> dict[str, float]:
    """Alternate free and priced rounds against one core (no workers: jobs queue up)."""
    with tempfile.TemporaryDirectory(prefix="ashao-bench-") as tmp:
        net = LocalNetwork(
            data_dir=Path(tmp),
            http_addr=f"127.0.0.1:{free_port()}",
            grpc_addr=f"127.0.0.1:{free_port()}",
            quiet=True,
            extra_env={"ASHAO_QUEUE_TIMEOUT_S": "3600"},
        )
        try:
            net.start_core()
            return run_async(_run(net.grpc_addr, Path(tmp), clients, seconds, rounds))
        finally:
            net.stop()
