"""Memory follows the store: a write that fails changes nothing a client can observe, now or after a
restart (sign-in, its sign-up grant, logout, API keys)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ashao.v1 import account_pb2
from core.economics import SIGNUP_GRANT
from tests.core.identity.test_accounts import challenge, sign, wallet
from tests.helpers.core import Core, core_settings, start_core, stop_core
from tests.helpers.faults import failing_writes

pytestmark = pytest.mark.timeout(60)


async def _sign_in(core: Core, key: object, address: str) -> account_pb2.SignInResponse:
    message = await challenge(core, address)
    return await core.accounts.SignIn(
        account_pb2.SignInRequest(address=address, message=message, signature=sign(key, message))  # type: ignore[arg-type]
    )


async def test_a_first_sign_in_whose_write_fails_leaves_nothing_behind(core: Core) -> None:
    key, address = wallet()
    with failing_writes(core.app.store, when="INSERT INTO users") as failed:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _sign_in(core, key, address)
    assert failed and info.value.code() == grpc.StatusCode.UNAVAILABLE
    # The wallet signs in at once afterwards, as a new user, with its sign-up grant.
    r = await _sign_in(core, key, address)
    md = (("authorization", f"Bearer {r.session_token}"),)
    me = await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)
    assert me.user.address == address and me.credits == SIGNUP_GRANT
    assert me.user.created_at_ms > 0 and r.user.created_at_ms == me.user.created_at_ms
    assert -await core.app.ledger.balance("mint") == SIGNUP_GRANT  # granted once, not twice


async def test_a_logout_whose_write_fails_keeps_the_session_now_and_after_restart(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path))
    key, address = wallet()
    try:
        r = await _sign_in(core, key, address)
        md = (("authorization", f"Bearer {r.session_token}"),)
        with failing_writes(core.app.store, when="UPDATE sessions"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await core.accounts.SignOut(account_pb2.SignOutRequest(), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)).user.address == address
    finally:
        await stop_core(core)
    core = await start_core(core_settings(tmp_path))
    try:
        # What the client was told (the logout failed) is what the restarted core holds.
        assert (await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)).user.address == address
        await core.accounts.SignOut(account_pb2.SignOutRequest(), metadata=md)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await stop_core(core)


async def test_an_api_key_whose_write_fails_does_not_work(core: Core) -> None:
    key, address = wallet()
    r = await _sign_in(core, key, address)
    md = (("authorization", f"Bearer {r.session_token}"),)
    with failing_writes(core.app.store, when="INSERT INTO api_keys"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.accounts.CreateApiKey(account_pb2.CreateApiKeyRequest(name="ci"), metadata=md)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await core.accounts.ListApiKeys(account_pb2.ListApiKeysRequest(), metadata=md)).keys == []


async def test_storage_failures_are_unavailable_not_internal(core: Core) -> None:
    """A full disk answers 503 (retry) for every write a caller can make, and changes nothing."""
    from ashao.v1 import treasury_pb2

    key, address = wallet()
    r = await _sign_in(core, key, address)
    md = (("authorization", f"Bearer {r.session_token}"),)
    await core.join_token()  # issued before the disk fills: the registration below is what fails
    calls = [
        lambda: core.treasury.Stake(treasury_pb2.StakeRequest(amount=10), metadata=md),
        lambda: core.accounts.CreateApiKey(account_pb2.CreateApiKeyRequest(name="k"), metadata=md),
        lambda: core.send("hi", tier="pro", metadata=md),
        lambda: core.register(),
    ]
    for call in calls:
        with failing_writes(core.app.store, count=10):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    me = await core.accounts.WhoAmI(account_pb2.WhoAmIRequest(), metadata=md)
    assert me.credits == SIGNUP_GRANT  # nothing was staked or charged
