"""Crash safety: SIGKILL the core in the middle of a burst of priced sends and completions."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from ashao.v1 import account_pb2, account_pb2_grpc, chat_pb2, chat_pb2_grpc, worker_pb2, worker_pb2_grpc
from ashao_cli.devnet import LocalNetwork
from ashao_common.base58 import b58encode
from core.economics import SIGNUP_GRANT
from tests.helpers.net import free_port
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(120)


async def sign_in(channel: grpc.aio.Channel) -> tuple[str, tuple[tuple[str, str], ...]]:
    stub = account_pb2_grpc.AccountServiceStub(channel)
    key = SigningKey.generate()
    address = b58encode(bytes(key.verify_key))
    msg = (await stub.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address))).message
    r = await stub.SignIn(
        account_pb2.SignInRequest(
            address=address, message=msg, signature=b58encode(key.sign(msg.encode()).signature)
        )
    )
    return r.user.id, (("authorization", f"Bearer {r.session_token}"),)


async def run_worker(channel: grpc.aio.Channel, token: str, stop: asyncio.Event) -> None:
    """Complete every assignment with two tokens until the stream ends or ``stop`` is set."""
    call = worker_pb2_grpc.WorkerServiceStub(channel).Connect(
        metadata=(("authorization", f"Bearer {token}"),)
    )
    await call.write(worker_pb2.ConnectRequest(hello=worker_pb2.WorkerHello(slots=64)))
    try:
        while not stop.is_set():
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            if msg.HasField("assignment"):
                jid = msg.assignment.job_id
                await call.write(
                    worker_pb2.ConnectRequest(
                        tokens=worker_pb2.TokenBatch(
                            jobs=[worker_pb2.JobTokens(job_id=jid, tokens=["a", "b"])]
                        )
                    )
                )
                await call.write(worker_pb2.ConnectRequest(complete=worker_pb2.JobComplete(job_id=jid)))
    except grpc.aio.AioRpcError:
        return
    finally:
        call.cancel()


def check_books(db_path: Path, acknowledged: set[str], uid: str, granted: int) -> None:
    with sqlite3.connect(db_path) as db:
        balances = dict(
            db.execute(
                "SELECT account, SUM(delta) FROM (SELECT credit AS account, amount AS delta FROM ledger"
                " UNION ALL SELECT debit, -amount FROM ledger) GROUP BY account"
            ).fetchall()
        )
        assert sum(balances.values()) == 0
        assert all(v >= 0 for k, v in balances.items() if k != "mint")
        assert balances.get("escrow", 0) == 0
        settled = dict(db.execute("SELECT job_id, outcome FROM settlements").fetchall())
        paid_jobs = db.execute("SELECT id, cost, state FROM jobs WHERE payer = ?", (uid,)).fetchall()
    assert acknowledged <= set(settled), "an acknowledged send was neither paid out nor refunded"
    for jid, _cost, state in paid_jobs:
        assert settled.get(jid) == ("paid" if state == "done" else "refunded"), (jid, state)
    spent = sum(cost for jid, cost, _ in paid_jobs if settled.get(jid) == "paid")
    assert balances.get(f"user:{uid}", 0) == granted - spent


async def test_sigkill_mid_burst_keeps_the_books(tmp_path: Path) -> None:
    net = LocalNetwork(
        data_dir=tmp_path / "d",
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        quiet=True,
    )
    try:
        net.start_core()
        channel = grpc.aio.insecure_channel(net.grpc_addr)
        uid, user = await sign_in(channel)
        op = (("authorization", "Bearer " + (net.data_dir / "operator.token").read_text().strip()),)
        await account_pb2_grpc.AccountServiceStub(channel).GrantCredits(
            account_pb2.GrantCreditsRequest(user=uid, amount=1000), metadata=op
        )
        reg = await worker_pb2_grpc.WorkerServiceStub(channel).RegisterWorker(
            worker_pb2.RegisterWorkerRequest(name="crash", slots=64, join_token=net.join_token())
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(channel, reg.worker_token, stop))
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        acknowledged: set[str] = set()

        async def sender(i: int) -> None:
            for j in range(100):
                try:
                    r = await chat.SendMessage(
                        chat_pb2.SendMessageRequest(tier="basic", content=f"{i}-{j}"),
                        metadata=user,
                        timeout=5,
                    )
                except grpc.aio.AioRpcError:
                    return
                acknowledged.add(r.job_id)

        senders = [asyncio.create_task(sender(i)) for i in range(8)]
        await eventually(lambda: len(acknowledged) >= 150)
        core = next(p for name, p in net.children if name == "core")
        core.send_signal(signal.SIGKILL)
        await asyncio.gather(*senders)
        stop.set()
        await asyncio.wait_for(worker, 10)
        await channel.close()
        await asyncio.to_thread(core.wait, 10)
        net.children.remove(("core", core))
        assert len(acknowledged) >= 150

        net.start_core()
        channel = grpc.aio.insecure_channel(net.grpc_addr)
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(channel, reg.worker_token, stop))
        db = net.data_dir / "ashao.db"

        def all_done() -> bool:  # every requeued job gets done by the worker after restart
            with sqlite3.connect(db) as conn:
                left = conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state IN ('queued','assigned','streaming')"
                ).fetchone()[0]
            return bool(left == 0)

        await eventually(all_done, timeout=50)
        stop.set()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await channel.close()
        net.stop()
        check_books(db, acknowledged, uid, 1000 + SIGNUP_GRANT)
    finally:
        net.stop()
