"""Who is calling: only a trusted relay may name end users' addresses; everything a caller sends is
bounded; a request that does not decode is bad input, not an internal error."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from ashao.v1 import account_pb2, chat_pb2, network_pb2
from ashao_common.base58 import b58encode
from core.grpc.context import peer_host
from tests.helpers.core import Core, core_settings, start_core, stop_core

pytestmark = pytest.mark.timeout(30)


def relay_key(core: Core) -> tuple[tuple[str, str], ...]:
    return (("x-ashao-relay-key", (core.app.settings.data_dir / "relay.token").read_text().strip()),)


def as_ip(ip: str) -> tuple[tuple[str, str], ...]:
    return (("x-ashao-client-ip", ip),)


async def _free_send(core: Core, md: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await core.chat.SendMessage(chat_pb2.SendMessageRequest(tier="free", content="hi"), metadata=md)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_peer_addresses_are_keyed_without_their_port() -> None:
    assert peer_host("ipv4:10.1.2.3:5555") == "10.1.2.3"
    assert peer_host("ipv6:[::1]:5555") == "::1"
    assert peer_host("unix:/tmp/x") == "unix"


async def test_a_named_address_counts_only_from_a_trusted_relay(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path, send_burst_per_ip=3, send_rate_per_ip=0.001))
    try:
        # Anyone else claiming to be many addresses is one address: its own.
        codes = [await _free_send(core, as_ip(f"10.0.0.{i}")) for i in range(5)]
        assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
        # The trusted relay speaks for each of its users separately.
        trusted = [await _free_send(core, (*as_ip(f"10.1.0.{i}"), *relay_key(core))) for i in range(5)]
        assert trusted == [grpc.StatusCode.OK] * 5
        assert await _free_send(core, (("x-ashao-relay-key", "rly_wrong"), *as_ip("10.2.0.1"))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED  # a wrong key is no key: still the peer's own bucket
        )
    finally:
        await stop_core(core)


async def test_relayed_sends_name_addresses_only_for_a_trusted_relay(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path, send_burst_per_ip=2, send_rate_per_ip=0.001))
    try:

        async def many(md: tuple[tuple[str, str], ...]) -> list[str]:
            call = core.chat.SendMany(metadata=md)
            sends = [
                chat_pb2.RelayedSend(
                    id=i, send=chat_pb2.SendMessageRequest(tier="free", content="x"), client_ip=f"10.9.0.{i}"
                )
                for i in range(4)
            ]
            await call.write(chat_pb2.SendManyRequest(sends=sends))
            results: list[chat_pb2.SendResult] = []
            while len(results) < 4:
                results.extend((await asyncio.wait_for(call.read(), 5)).results)
            await call.done_writing()
            return [
                "sent" if r.HasField("sent") else r.error.code for r in sorted(results, key=lambda r: r.id)
            ]

        assert sorted(await many(())) == ["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "sent", "sent"]
        assert await many(relay_key(core)) == ["sent"] * 4
    finally:
        await stop_core(core)


async def test_an_untrusted_subscriber_follows_a_bounded_number_of_jobs(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path, subscribe_max_watches_untrusted=2))
    try:
        jobs = [(await core.send(f"m{i}"))[0] for i in range(3)]

        async def answers(md: tuple[tuple[str, str], ...]) -> list[str]:
            call = core.chat.Subscribe(metadata=md)
            for i, job in enumerate(jobs, start=1):
                await call.write(chat_pb2.SubscribeRequest(watch=chat_pb2.Watch(sub_id=i, job_id=job)))
            got: dict[int, str] = {}
            while len(got) < 3:
                for ev in (await asyncio.wait_for(call.read(), 5)).events:
                    kind = ev.WhichOneof("kind")
                    if kind in ("accepted", "rejected"):
                        got[ev.sub_id] = "accepted" if kind == "accepted" else ev.rejected.code
            call.cancel()
            return [got[i] for i in (1, 2, 3)]

        assert await answers(()) == ["accepted", "accepted", "RESOURCE_EXHAUSTED"]
        assert await answers(relay_key(core)) == ["accepted"] * 3
    finally:
        await stop_core(core)


async def test_a_request_that_does_not_decode_is_invalid_argument(core: Core) -> None:
    raw = core.channel.unary_unary(
        "/ashao.v1.ChatService/SendMessage", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await raw(b"\xff\xff\xff\xff\x0f", timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DecodeError" not in (info.value.details() or "")
    stream = core.channel.stream_stream(
        "/ashao.v1.ChatService/Subscribe", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )()
    await stream.write(b"\xff\xff\xff\xff\x0f")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(stream.read(), 5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_huge_wallet_inputs_are_refused_without_stalling_anyone(core: Core) -> None:
    """Base58 decoding is quadratic: a 300 KB signature or a 200k-character address must be refused
    unread, while other calls go on (each bounded well below what decoding them would take)."""
    address = "1" * 200_000
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await core.accounts.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    wallet = b58encode(bytes(SigningKey.generate().verify_key))
    message = (
        await core.accounts.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=wallet))
    ).message
    signing_in = asyncio.ensure_future(
        core.accounts.SignIn(
            account_pb2.SignInRequest(address=wallet, message=message, signature="2" * 300_000), timeout=5
        )
    )

    stats = await core.network.GetStats(network_pb2.GetStatsRequest(), timeout=2)
    assert stats.queue_depth == 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await signing_in
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
