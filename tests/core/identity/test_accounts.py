"""Sign-in, principals, credits, the ledger on the chat path, staking and the treasury, over gRPC."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from ashao.v1 import account_pb2, chat_pb2, treasury_pb2, worker_pb2
from ashao_common.base58 import b58encode
from core.economics import SIGNUP_GRANT, TIERS
from core.money.ledger import BURN, ESCROW, MINT, TREASURY, Move, worker_account
from tests.helpers.core import Core, collect, connect_worker, core_settings, start_core, stop_core

pytestmark = pytest.mark.timeout(60)


def wallet() -> tuple[SigningKey, str]:
    key = SigningKey.generate()
    return key, b58encode(bytes(key.verify_key))


async def challenge(core: Core, address: str) -> str:
    r = await core.accounts.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address))
    return r.message


def sign(key: SigningKey, message: str) -> str:
    return b58encode(key.sign(message.encode()).signature)


async def sign_in_error(core: Core, address: str, message: str, signature: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.accounts.SignIn(
            account_pb2.SignInRequest(address=address, message=message, signature=signature)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return info.value.details() or ""


async def test_sign_in_message_layout_and_session(core: Core) -> None:
    key, address = wallet()
    message = await challenge(core, address)
    lines = message.split("\n")
    assert lines[0] == "127.0.0.1:8080 wants you to sign in with your Solana account:"
    assert lines[1] == address and lines[2] == "" and lines[4] == ""
    assert [line.split(": ")[0] for line in lines[5:]] == [
        "URI",
        "Version",
        "Chain ID",
        "Nonce",
        "Issued At",
        "Expiration Time",
    ]
    r = await core.accounts.SignIn(
        account_pb2.SignInRequest(address=address, message=message, signature=sign(key, message))
    )
    assert r.user.id.startswith("usr_") and r.session_token.startswith("sess_")
    md = (("authorization", f"Bearer {r.session_token}"),)
    me = await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)
    assert me.user.address == address and me.credits == SIGNUP_GRANT
    await core.accounts.SignOut(account_pb2.SignOutRequest(), metadata=md)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_every_sign_in_failure_is_refused_with_its_reason(core: Core) -> None:
    key, address = wallet()
    other_key, other_address = wallet()
    # replayed: the nonce is single use
    message = await challenge(core, address)
    await core.accounts.SignIn(
        account_pb2.SignInRequest(address=address, message=message, signature=sign(key, message))
    )
    assert "already used" in await sign_in_error(core, address, message, sign(key, message))
    # tampered: any changed byte
    message = await challenge(core, address)
    tampered = message.replace("Sign in to ashao.", "Sign in to ashao and send all funds.")
    assert "altered" in await sign_in_error(core, address, tampered, sign(key, tampered))
    # wrong domain
    message = await challenge(core, address)
    foreign = message.replace("127.0.0.1:8080 wants", "evil.example wants", 1)
    assert "another domain" in await sign_in_error(core, address, foreign, sign(key, foreign))
    # wrong address: a message issued to one wallet, presented for another
    message = await challenge(core, address)
    assert "another address" in await sign_in_error(core, other_address, message, sign(other_key, message))
    # signature by another key
    message = await challenge(core, address)
    assert "signature" in await sign_in_error(core, address, message, sign(other_key, message))
    # failed attempts do not consume a nonce: the last message still signs in
    r = await core.accounts.SignIn(
        account_pb2.SignInRequest(address=address, message=message, signature=sign(key, message))
    )
    assert r.user.address == address


async def test_expired_message_is_refused(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path))
    try:
        key, address = wallet()
        message = await challenge(c, address)
        c.app.wallets.clock = lambda: time.time() + c.app.wallets.settings.nonce_ttl_s + 1
        assert "expired" in await sign_in_error(c, address, message, sign(key, message))
    finally:
        await stop_core(c)


async def test_priced_tier_needs_sign_in_and_credits(core: Core) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.send("x", tier="pro")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    user = await core.sign_in()
    for _ in range(SIGNUP_GRANT // TIERS["ultra"].credit_cost):
        await core.send("x", tier="ultra", metadata=user)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.send("x", tier="ultra", metadata=user)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not enough credits" in (info.value.details() or "")


async def test_double_spend_exactly_covered_sends_accepted(core: Core) -> None:
    user = await core.sign_in()
    uid = (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)).user.id
    # spend the sign-up grant, then grant exactly 40 basic messages
    ledger = core.app.ledger
    spare = await ledger.balance(f"user:{uid}")
    jobs_before = core.app.jobs.snapshot().queue_depth
    for _ in range(spare):
        await core.send("x", tier="basic", metadata=user)
    await core.accounts.GrantCredits(
        account_pb2.GrantCreditsRequest(user=uid, amount=40), metadata=core.operator
    )
    results = await asyncio.gather(
        *(core.send(f"burst {i}", tier="basic", metadata=user) for i in range(100)), return_exceptions=True
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 40 and len(refused) == 60
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused)
    assert (await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=user)).credits == 0
    assert core.app.jobs.snapshot().queue_depth == jobs_before + spare + 40
    rows = await core.app.store.fetchall("SELECT COUNT(*) FROM jobs WHERE payer = ?", (uid,))
    assert rows == [(spare + 40,)]


async def test_completion_pays_out_and_failure_refunds(core: Core) -> None:
    user = await core.sign_in(credits=0)
    uid = (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)).user.id
    ledger = core.app.ledger
    worker = await connect_worker(core, slots=1)
    paid_job, _ = await core.send("pay", tier="ultra", metadata=user)
    await worker.assignment()
    await worker.tokens(paid_job, ["a"])
    await worker.complete(paid_job)
    await collect(core, paid_job, metadata=user)
    cost = TIERS["ultra"].credit_cost
    w, t, b = TIERS["ultra"].split(cost)
    assert await ledger.balance(worker_account(worker.worker_id)) == w
    assert (
        await ledger.balance(TREASURY) == t
        and await ledger.balance(BURN) == b
        and await ledger.balance(ESCROW) == 0
    )
    refund_job, _ = await core.send("refund", tier="ultra", metadata=user)
    await worker.assignment()
    await worker.fail(refund_job, retryable=False)
    await collect(core, refund_job, metadata=user)
    assert await ledger.balance(f"user:{uid}") == SIGNUP_GRANT - cost
    assert await ledger.balance(ESCROW) == 0
    assert (
        sum((await ledger.balances.snapshot()).values()) == 0 and -await ledger.balance(MINT) == SIGNUP_GRANT
    )
    outcomes = dict(await core.app.store.fetchall("SELECT job_id, outcome FROM settlements"))
    assert outcomes == {paid_job: "paid", refund_job: "refunded"}
    # the worker sees its earnings
    _, token = await core.register()
    acct = await core.workers.GetWorkerAccount(
        worker_pb2.GetWorkerAccountRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    assert acct.earnings == 0 and acct.jobs_completed == 0
    info = core.app.jobs.registry.get(worker.worker_id)
    assert (await core.app.jobs.queries.worker_account(info)).earnings == w


async def test_other_users_job_is_not_found(core: Core) -> None:
    alice = await core.sign_in()
    bob = await core.sign_in()
    job, conv = await core.send("mine", tier="basic", metadata=alice)
    for call in (
        core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job), metadata=bob),
        core.chat.GetConversation(chat_pb2.GetConversationRequest(conversation_id=conv), metadata=bob),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.send("hijack", tier="basic", conversation_id=conv, metadata=bob)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await core.chat.GetJob(chat_pb2.GetJobRequest(job_id=job), metadata=alice)).job.id == job


async def test_grant_is_operator_only_and_api_keys_work(core: Core) -> None:
    user = await core.sign_in()
    uid = (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=user)).user.id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.accounts.GrantCredits(account_pb2.GrantCreditsRequest(user=uid, amount=5), metadata=user)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    key = await core.accounts.CreateApiKey(account_pb2.CreateApiKeyRequest(name="ci"), metadata=user)
    by_key = (("authorization", f"Bearer {key.secret}"),)
    assert (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=by_key)).user.id == uid
    listed = await core.accounts.ListApiKeys(account_pb2.ListApiKeysRequest(), metadata=user)
    assert [k.id for k in listed.keys] == [key.key.id] and key.secret not in str(listed)
    stored = await core.app.store.fetchall("SELECT key_hash FROM api_keys")
    assert stored and stored[0][0] != key.secret  # hashed at rest
    await core.accounts.RevokeApiKey(account_pb2.RevokeApiKeyRequest(key_id=key.key.id), metadata=user)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=by_key)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_staking_and_treasury(core: Core) -> None:
    user = await core.sign_in()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.treasury.Stake(treasury_pb2.StakeRequest(amount=5))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for bad in (0, -3, SIGNUP_GRANT + 1):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.treasury.Stake(treasury_pb2.StakeRequest(amount=bad), metadata=user)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "amount" in (
            info.value.details() or ""
        )
    pos = (await core.treasury.Stake(treasury_pb2.StakeRequest(amount=60), metadata=user)).position
    assert (pos.balance, pos.staked) == (SIGNUP_GRANT - 60, 60)
    with pytest.raises(grpc.aio.AioRpcError):
        await core.treasury.Unstake(treasury_pb2.UnstakeRequest(amount=61), metadata=user)
    # fill the treasury with one paid ultra job, then a snapshot pays stakers by the rule
    worker = await connect_worker(core)
    job, _ = await core.send("x", tier="ultra", metadata=user)
    await worker.assignment()
    await worker.tokens(job, ["paid"])
    await worker.complete(job)
    await collect(core, job, metadata=user)
    # a second staker with a third of the stake, and a treasury big enough for a visible pool
    other = await core.sign_in()
    await core.treasury.Stake(treasury_pb2.StakeRequest(amount=30), metadata=other)
    await core.app.ledger.commit([Move(MINT, TREASURY, 99_998, "grant")])
    treasury_before = await core.app.ledger.balance(TREASURY)
    assert treasury_before == 100_000
    snap = await core.app.treasury.tick()
    paid = treasury_before - await core.app.ledger.balance(TREASURY)
    assert paid == 66 + 33  # a pool of 10 basis points (100), split 60:30 with floors; 1 stays
    mine = (await core.treasury.GetStaking(treasury_pb2.GetStakingRequest(), metadata=user)).position
    theirs = (await core.treasury.GetStaking(treasury_pb2.GetStakingRequest(), metadata=other)).position
    assert (mine.rewards, theirs.rewards) == (66, 33)  # pro rata 60:30, floors; the rest stays
    paid = mine.rewards + theirs.rewards
    r = await core.treasury.GetTreasury(treasury_pb2.GetTreasuryRequest())
    assert r.series[-1].at_ms == snap.at_ms and r.current.balance == await core.app.ledger.balance(TREASURY)
    w, _, b = TIERS["ultra"].split(TIERS["ultra"].credit_cost)
    assert r.current.total_burned == b and r.current.rewards_paid == w + paid
    assert r.current.circulating_supply == -await core.app.ledger.balance(MINT) - b - r.current.balance
    assert r.current.price == pytest.approx(1 + r.current.balance / r.current.circulating_supply)
    pos = (await core.treasury.Unstake(treasury_pb2.UnstakeRequest(amount=60), metadata=user)).position
    assert pos.staked == 0
