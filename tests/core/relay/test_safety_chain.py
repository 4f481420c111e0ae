"""The safety chain stays one verifiable chain: through failed writes, concurrent requests, restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import orjson
import pytest

from ashao.v1 import relay_pb2
from core.relay.safety import SafetyLedger, SafetyRecord
from tests.core.relay.test_relay import prompt, relay_core
from tests.helpers.core import stop_core
from tests.helpers.engines import Engine
from tests.helpers.faults import failing_writes
from tests.helpers.upstream import FakeUpstream, providers

pytestmark = pytest.mark.timeout(60)


async def _verify(relay: object) -> dict[str, object]:
    doc = (await relay.GetDocument(relay_pb2.GetDocumentRequest(name="safety_verify"))).document  # type: ignore[attr-defined]
    return orjson.loads(doc.body)  # type: ignore[no-any-return]


async def test_a_failed_safety_write_does_not_break_the_chain(tmp_path: Path) -> None:
    async with FakeUpstream(["fine"]).running() as up:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            await relay.Chat(prompt("before"))
            with failing_writes(core.app.store, when="INSERT INTO safety_ledger") as failed:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await relay.Chat(prompt("during"))
            assert failed and info.value.code() == grpc.StatusCode.UNAVAILABLE
            await relay.Chat(prompt("after"))
            assert await _verify(relay) == {"intact": True, "records": 4, "first_bad_record": None}
        finally:
            await stop_core(core)


async def test_concurrent_requests_chain_in_one_order_across_a_restart(tmp_path: Path) -> None:
    async with FakeUpstream(["ok"]).running() as up:
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            await asyncio.gather(*(relay.Chat(prompt(f"q{i}")) for i in range(20)))
            assert await _verify(relay) == {"intact": True, "records": 40, "first_bad_record": None}
        finally:
            await stop_core(core)
        core, relay = await relay_core(tmp_path, relay_providers=providers(("hosted", up)))
        try:
            await asyncio.gather(*(relay.Chat(prompt(f"r{i}")) for i in range(5)))
            assert await _verify(relay) == {"intact": True, "records": 50, "first_bad_record": None}
        finally:
            await stop_core(core)


async def test_several_writers_append_to_one_chain(engine: Engine) -> None:
    """Three cores' ledgers on one store, each with its own store connection, record at once: every
    record lands once, the chain verifies end to end, and no two requests share a state height."""
    stores = [engine.make() for _ in range(3)]
    for store in stores:
        await store.open()
    try:
        ledgers = [SafetyLedger(store) for store in stores]
        for ledger in ledgers:
            await ledger.load()

        async def request(ledger: SafetyLedger, n: int) -> tuple[SafetyRecord, SafetyRecord]:
            first = await ledger.record(
                height=None,
                index=0,
                stage="ingress",
                verdict="allow",
                category="",
                reason="",
                text=f"q{n}",
                policy_hash="p",
            )
            second = await ledger.record(
                height=first.state_height,
                index=1,
                stage="egress",
                verdict="allow",
                category="",
                reason="",
                text=f"a{n}",
                policy_hash="p",
            )
            return first, second

        pairs = await asyncio.gather(*(request(ledgers[n % 3], n) for n in range(60)))
        heights = [first.state_height for first, _ in pairs]
        assert sorted(heights) == list(range(1, 61))
        assert all(second.state_height == first.state_height for first, second in pairs)
        assert await ledgers[0].verify() == (True, 120, "")
        assert sum(ledger.rechained for ledger in ledgers) > 0  # they did contend for the head
    finally:
        for store in stores:
            await store.close()
