"""Who may join as a worker: join tokens (limited, expiring, revocable), owner wallets (signed, once),
rate-limited registrations, and revocation."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from ashao.v1 import operator_pb2, worker_pb2
from ashao_common.base58 import b58encode
from core.workers.joining import registration_message
from tests.helpers.core import Core, StreamWorker, core_settings, start_core, stop_core
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


async def _register(core: Core, **fields: object) -> worker_pb2.RegisterWorkerResponse:
    return await core.workers.RegisterWorker(worker_pb2.RegisterWorkerRequest(name="w", **fields))  # type: ignore[arg-type]


async def _refused(core: Core, code: grpc.StatusCode, **fields: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _register(core, **fields)
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def _issue(core: Core, **fields: object) -> operator_pb2.IssueJoinTokenResponse:
    return await core.operators.IssueJoinToken(
        operator_pb2.IssueJoinTokenRequest(**fields),
        metadata=core.operator,  # type: ignore[arg-type]
    )


def _signed(key: SigningKey, name: str = "w", at_ms: int | None = None) -> dict[str, object]:
    address = b58encode(bytes(key.verify_key))
    at = int(time.time() * 1000) if at_ms is None else at_ms
    sig = base64.b64encode(key.sign(registration_message(address, name, at)).signature).decode()
    return {"owner_address": address, "owner_signature": sig, "signed_at_ms": at}


async def test_registration_needs_a_credential(core: Core) -> None:
    assert "join token" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED)
    assert "unknown" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, join_token="join_nope")


async def test_a_join_token_works_for_its_uses_only_and_can_be_revoked(core: Core) -> None:
    t = await _issue(core, label="two", uses=2)
    assert t.join_token.startswith("join_") and t.expires_at_ms > time.time() * 1000
    a = await _register(core, join_token=t.join_token)
    b = await _register(core, join_token=t.join_token)
    assert a.worker_id != b.worker_id
    assert "used up" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, join_token=t.join_token)
    other = await _issue(core, label="revoked")
    await core.operators.RevokeJoinToken(
        operator_pb2.RevokeJoinTokenRequest(id=other.id), metadata=core.operator
    )
    assert "revoked" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, join_token=other.join_token)


async def test_only_the_operator_issues_join_tokens(core: Core) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.operators.IssueJoinToken(operator_pb2.IssueJoinTokenRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_expired_join_token_is_refused(core: Core) -> None:
    t = await _issue(core, ttl_s=60)
    core.app.jobs.registry.joining.clock = lambda: time.time() + 61
    assert "expired" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, join_token=t.join_token)


async def test_a_wallet_binds_the_worker_to_its_owner_once(core: Core) -> None:
    key = SigningKey.generate()
    fields = _signed(key)
    r = await _register(core, **fields)
    md = (("authorization", f"Bearer {r.worker_token}"),)
    account = await core.workers.GetWorkerAccount(worker_pb2.GetWorkerAccountRequest(), metadata=md)
    assert account.owner_address == fields["owner_address"]
    assert "already used" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, **fields)
    stale = _signed(key, at_ms=int(time.time() * 1000) - 10 * 60 * 1000)
    assert "five minutes" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, **stale)
    forged = {**_signed(SigningKey.generate()), "owner_address": fields["owner_address"]}
    assert "does not sign" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, **forged)
    renamed = {**_signed(key, name="other-name")}
    assert "does not sign" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, **renamed)


async def test_a_replayed_wallet_signature_registers_nothing(core: Core) -> None:
    fields = _signed(SigningKey.generate())
    await _register(core, **fields)
    before = len(list(core.app.jobs.registry))
    assert "already used" in await _refused(core, grpc.StatusCode.UNAUTHENTICATED, **fields)
    assert len(list(core.app.jobs.registry)) == before


async def test_the_policy_can_require_one_kind_of_credential(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, worker_registration="token"))
    try:
        await _refused(c, grpc.StatusCode.PERMISSION_DENIED, **_signed(SigningKey.generate()))
        await _register(c, join_token=await c.join_token())
    finally:
        await stop_core(c)


async def test_registrations_are_rate_limited_per_address(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, register_burst_per_ip=3, register_rate_per_ip=0.001))
    try:
        token = (await _issue(c, uses=10)).join_token
        for _ in range(3):
            await _register(c, join_token=token)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _register(c, join_token=token)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await stop_core(c)


async def test_a_revoked_worker_is_let_go_and_its_job_goes_elsewhere(core: Core) -> None:
    _, t1 = await core.register(slots=1)
    w1 = StreamWorker(core, t1, slots=1)
    await w1.hello()
    job_id, _ = await core.send("hi")
    await w1.assignment()
    _, t2 = await core.register(slots=1)
    w2 = StreamWorker(core, t2, slots=1)
    await w2.hello()
    await core.operators.RevokeWorker(
        operator_pb2.RevokeWorkerRequest(worker_id=w1.worker_id), metadata=core.operator
    )
    a = await w2.assignment()
    assert a.job_id == job_id and a.attempt == 2
    await eventually(lambda: w1.call.done())
    md = (("authorization", f"Bearer {t1}"),)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.workers.GetWorkerAccount(worker_pb2.GetWorkerAccountRequest(), metadata=md)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    listed = await core.operators.ListWorkers(operator_pb2.ListWorkersRequest(), metadata=core.operator)
    assert [w.worker_id for w in listed.workers] == [w2.worker_id]
