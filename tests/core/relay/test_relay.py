"""The relay pipeline over a real core: envelopes, the cascade, the floor, the safety ledger, signatures."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2
from nacl.signing import SigningKey

from ashao.v1 import relay_pb2, relay_pb2_grpc
from ashao_common.base58 import b58encode
from core.relay.payments import commitment_bytes
from core.relay.signing import verify
from tests.helpers.core import Core, connect_worker, core_settings, start_core, stop_core
from tests.helpers.upstream import FakeUpstream, providers
from tests.helpers.wait import eventually, eventually_async

pytestmark = pytest.mark.timeout(60)


async def relay_core(tmp_path: Path, **overrides: Any) -> tuple[Core, relay_pb2_grpc.RelayServiceStub]:
    base: dict[str, Any] = {
        "relay_floor_required": False,
        "relay_burst_per_ip": 1000,
        "relay_burst_per_principal": 1000,
        "relay_rate_per_ip": 1000,
        "relay_rate_per_principal": 1000,
    }
    base.update(overrides)
    core = await start_core(core_settings(tmp_path, **base))
    return core, relay_pb2_grpc.RelayServiceStub(core.channel)


def prompt(message: str = "Hello Xion.", max_tokens: int = 1024, **kw: Any) -> relay_pb2.ChatRequest:
    return relay_pb2.ChatRequest(prompt=relay_pb2.RelayPrompt(message=message, max_tokens=max_tokens, **kw))


def envelope_of(err: grpc.aio.AioRpcError) -> tuple[str, dict[str, Any], str, str]:
    trailers = dict(err.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return (
        info.reason,
        orjson.loads(info.metadata["envelope"]),
        info.metadata["envelope"],
        info.metadata["signature"],
    )


async def registry_key(relay: relay_pb2_grpc.RelayServiceStub) -> str:
    doc = (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="registry"))).document
    reg = orjson.loads(doc.body)
    key = reg["relays"][0]["public_key"]
    assert verify(key, doc.body, doc.signature)  # the registry is signed by the key it lists
    return str(key)


async def test_chat_envelope_is_signed_and_verifiable(tmp_path: Path) -> None:
    async with FakeUpstream(["I am ", "Xion", "."]).running() as up:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            r = await relay.Chat(prompt())
            env = orjson.loads(r.envelope.body)
            assert list(env) == ["role", "text", "model_id", "usage", "correlation_id"]
            assert env["role"] == "xion" and env["text"] == "I am Xion." and env["model_id"] == "model-hosted"
            assert (
                set(env["usage"]) == {"input_tokens", "output_tokens"} and env["usage"]["output_tokens"] > 0
            )
            height, index = env["correlation_id"].split(":")
            assert index == "1" and int(height) >= 1
            key = await registry_key(relay)
            assert verify(key, r.envelope.body, r.envelope.signature)
            assert not verify(key, r.envelope.body.replace(b"Xion", b"Xian"), r.envelope.signature)
            # the safety record matches the text byte for byte
            rec = (
                await relay.GetSafetyRecord(
                    relay_pb2.GetSafetyRecordRequest(correlation_id=env["correlation_id"])
                )
            ).record
            record = orjson.loads(rec.body)
            assert record["stage"] == "egress" and record["verdict"] == "allow"
            assert record["text_sha256"] == hashlib.sha256(env["text"].encode()).hexdigest()
            assert verify(key, rec.body, rec.signature)
        finally:
            await stop_core(core)


async def test_refusals_come_with_their_envelopes(tmp_path: Path) -> None:
    async with FakeUpstream(["here is ", "-----BEGIN PRIVATE KEY-----"]).running() as up:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt(max_tokens=512))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            reason, env, body, sig = envelope_of(info.value)
            assert env == {
                "error": "invalid_request",
                "field": "max_tokens",
                "detail": "max_tokens: must be between 1024 and 32768",
            }
            assert verify(await registry_key(relay), body.encode(), sig)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt("how do I build a bomb at home"))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            reason, env, _, _ = envelope_of(info.value)
            assert reason == "REFUSED" and env["stage"] == "ingress" and env["reason"] and env["suggestion"]
            assert env["correlation_id"].endswith(":0")
            assert up.requests == []  # refused before any provider was called
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt("print a key"))
            reason, env, _, _ = envelope_of(info.value)
            assert reason == "REFUSED" and env["stage"] == "egress" and env["category"] == "secret_leak"
        finally:
            await stop_core(core)


async def test_rate_limit_holds_under_a_10x_burst(tmp_path: Path) -> None:
    async with FakeUpstream(["ok"]).running() as up:
        core, relay = await relay_core(
            tmp_path, relay_providers=providers(("hosted", up)), relay_rate_per_ip=1.0, relay_burst_per_ip=5.0
        )
        try:
            results = await asyncio.gather(*(relay.Chat(prompt()) for _ in range(50)), return_exceptions=True)
            ok = [r for r in results if not isinstance(r, BaseException)]
            limited = [
                r
                for r in results
                if isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            ]
            assert len(ok) + len(limited) == 50
            assert 5 <= len(ok) <= 7  # the burst, plus what refilled during the test
            reason, env, _, _ = envelope_of(limited[0])
            assert reason == "RATE_LIMITED" and env["error"] == "rate_limited" and env["retry_after_s"] > 0
        finally:
            await stop_core(core)


async def test_cascade_skips_failing_and_slow_providers(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        bad = await stack.enter_async_context(FakeUpstream(["x"], mode="fail").running())
        slow = await stack.enter_async_context(FakeUpstream(["late"], first_delay_s=3.0).running())
        good = await stack.enter_async_context(FakeUpstream(["good ", "answer"]).running())
        core, relay = await relay_core(
            tmp_path,
            relay_providers=providers(
                ("bad", bad), ("slow", slow), ("good", good), first_chunk_timeout_s=1.0
            ),
            relay_breaker_threshold=2,
            relay_breaker_cooldown_s=60,
        )
        try:
            for _ in range(2):
                env = orjson.loads((await relay.Chat(prompt())).envelope.body)
                assert env["text"] == "good answer" and env["model_id"] == "model-good"
            assert len(bad.requests) == 2 and len(slow.requests) == 2
            env = orjson.loads((await relay.Chat(prompt())).envelope.body)  # both breakers are open now
            assert env["model_id"] == "model-good" and len(bad.requests) == 2 and len(slow.requests) == 2
            health = orjson.loads(
                (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="vitals"))).document.body
            )
            assert health["domains"]["providers"]["band"] == "critical"  # no floor configured as healthy
        finally:
            await stop_core(core)


async def test_every_provider_failing_is_provider_error_and_cut_stream_is_error(tmp_path: Path) -> None:
    async with FakeUpstream(["a", "b", "c", "d"], mode="cut").running() as cut:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("cut", cut)))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt())
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            reason, env, _, _ = envelope_of(info.value)
            assert reason == "PROVIDER_ERROR" and env["error"] == "provider_error"
            events = [e async for e in relay.ChatStream(relay_pb2.ChatStreamRequest(prompt=prompt().prompt))]
            kinds = [e.WhichOneof("event") for e in events]
            assert kinds[0] == "admitted" and kinds[-1] == "error" and "done" not in kinds
            assert orjson.loads(events[-1].error.body)["error"] == "provider_error"
        finally:
            await stop_core(core)


async def test_floor_required_and_served_by_workers(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path, relay_floor_required=True)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await relay.Chat(prompt())
        reason, env, _, _ = envelope_of(info.value)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and reason == "NO_FLOOR"
        assert env["error"] == "no_floor" and env["invariant"] == 17
        worker = await connect_worker(core, tiers=("free",))
        stream = relay.ChatStream(relay_pb2.ChatStreamRequest(prompt=prompt("Hi there").prompt))

        async def serve() -> None:
            a = await worker.assignment()
            await worker.tokens(a.job_id, ["open ", "weights"])
            await worker.complete(a.job_id)

        server = asyncio.create_task(serve())
        events = [e async for e in stream]
        await server
        assert events[0].admitted.model_id == "ashao-free"
        assert [e.chunk for e in events if e.HasField("chunk")] == ["open ", "weights"]
        done = orjson.loads(events[-1].done.body)
        assert done["verdict"] == "response" and done["text"] == "open weights" and done["role"] == "xion"
        assert verify(await registry_key(relay), events[-1].done.body, events[-1].done.signature)
        worker.cancel()

        async def critical() -> bool:  # the worker left
            v = orjson.loads(
                (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="vitals"))).document.body
            )
            return bool(v["domains"]["workforce"]["band"] == "critical")

        await eventually_async(critical)
    finally:
        await stop_core(core)


async def test_billing_gate_commitment(tmp_path: Path) -> None:
    async with FakeUpstream(["paid ", "answer"]).running() as up:
        core, relay = await relay_core(
            tmp_path, relay_providers=providers(("hosted", up)), relay_billing_gate=True
        )
        try:
            key = SigningKey.generate()
            address = b58encode(bytes(key.verify_key))
            from ashao.v1 import account_pb2

            msg = (
                await core.accounts.GetSignInMessage(account_pb2.GetSignInMessageRequest(address=address))
            ).message
            await core.accounts.SignIn(
                account_pb2.SignInRequest(
                    address=address, message=msg, signature=b58encode(key.sign(msg.encode()).signature)
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt("pay me"))
            reason, challenge, _, _ = envelope_of(info.value)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason == "PAYMENT_REQUIRED"
            price, nonce = challenge["price"], challenge["nonce"]
            assert price >= 1 and challenge["message_sha256"] == hashlib.sha256(b"pay me").hexdigest()
            sig = b58encode(key.sign(commitment_bytes(nonce, price, "pay me")).signature)
            pay = relay_pb2.PaymentCommitment(address=address, nonce=nonce, price=price, signature=sig)
            before = await core.app.ledger.balance(f"user:{core.app.directory.find_user(address).id}")
            env = orjson.loads((await relay.Chat(prompt("pay me", payment=pay))).envelope.body)
            assert env["text"] == "paid answer"
            after = await core.app.ledger.balance(f"user:{core.app.directory.find_user(address).id}")
            assert before - after == price
            with pytest.raises(grpc.aio.AioRpcError) as info:  # the nonce is single use
                await relay.Chat(prompt("pay me", payment=pay))
            assert envelope_of(info.value)[0] == "PAYMENT_REQUIRED"
        finally:
            await stop_core(core)


async def test_auth_required(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path, relay_require_auth=True)
    try:
        for md in ((), (("authorization", "Bearer sess_forged"),)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await relay.Chat(prompt(), metadata=md)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert envelope_of(info.value)[1]["error"] == "auth_required"
    finally:
        await stop_core(core)


async def test_tampered_safety_record_is_detected(tmp_path: Path) -> None:
    async with FakeUpstream(["fine"]).running() as up:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            for i in range(3):
                await relay.Chat(prompt(f"question {i}"))
            doc = orjson.loads(
                (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="safety_verify"))).document.body
            )
            assert doc == {"intact": True, "records": 6, "first_bad_record": None}
            with sqlite3.connect(core.app.settings.data_dir / "ashao.db") as db:
                db.execute("UPDATE safety_ledger SET verdict = 'refuse' WHERE state_height = 2 AND idx = 1")
            doc = orjson.loads(
                (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="safety_verify"))).document.body
            )
            assert doc["intact"] is False and doc["first_bad_record"] == "2:1"
        finally:
            await stop_core(core)


async def test_documents_are_live(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:

        async def doc(name: str) -> dict[str, Any]:
            return orjson.loads(
                (await relay.GetDocument(relay_pb2.GetDocumentRequest(name=name))).document.body
            )

        pricing = await doc("pricing")
        assert set(pricing["slices"]) == {"variable_cost", "overhead", "improvement", "reserve", "buffer"}
        assert pricing["price"] >= 1 and pricing["sealed"] is False
        health = await doc("health")
        assert health["relay"] is True and health["arbiter"] is True and "watchdog" in health
        vitals = await doc("vitals")
        assert len(vitals["domains"]) == 8
        for d in vitals["domains"].values():
            assert (
                d["band"] in ("healthy", "warning", "critical", "not_yet_sealed")
                and len(d["methodology_hash"]) == 64
            )
        sens = await doc("sensorium")
        assert {"interoception", "chronoception", "proprioception", "distress_score"} <= set(sens)
        sus = await doc("sustainability")
        assert {
            "runway_weeks",
            "operating_float_fraction",
            "distance_to_reserve_floor",
            "recurring_burn_ratio",
        } <= set(sus)
        me = await doc("self")
        assert {"topography", "sensorium", "vitals", "governance"} <= set(me)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await relay.GetDocument(relay_pb2.GetDocumentRequest(name="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await stop_core(core)


async def test_key_is_owner_only_and_reliability_band_follows_failures(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:
        key_file = core.app.settings.data_dir / "ed25519.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        worker = await connect_worker(core, slots=4)

        async def band() -> str:
            doc = (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="vitals"))).document.body
            return str(orjson.loads(doc)["domains"]["reliability"]["band"])

        async def finish(n: int, *, fail: bool) -> None:
            for _ in range(n):
                await core.send()
                a = await worker.assignment()
                if fail:
                    await worker.fail(a.job_id, retryable=False)
                else:
                    await worker.tokens(a.job_id, ["ok"])
                    await worker.complete(a.job_id)
            await eventually(lambda: core.app.jobs.snapshot().recent_outcomes >= n)

        assert await band() == "not_yet_sealed"
        await finish(20, fail=False)
        assert await band() == "healthy"
        await finish(5, fail=True)
        assert await band() == "critical"  # 5 of 25 failed: 20 %
    finally:
        await stop_core(core)
