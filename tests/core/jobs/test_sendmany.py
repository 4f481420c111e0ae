"""SendMany: sends relayed over one stream are bounded in flight (backpressure, not a task apiece)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ashao.v1 import chat_pb2
from core.grpc import chat as chat_service
from core.store import Statement
from tests.helpers.core import Core
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)


async def test_sends_in_flight_per_stream_are_bounded(core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_service, "MAX_SENDS_IN_FLIGHT", 3)
    gates: list[asyncio.Future[None]] = []
    released = 0
    most = 0
    submit = core.app.store.submit

    def held_submit(statements: Sequence[Statement]) -> asyncio.Future[None]:
        """Sends' units wait for the test to let them commit."""
        nonlocal most
        if not any("INSERT INTO jobs" in sql for sql, _ in statements):
            return submit(statements)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gates.append(gate)
        most = max(most, len(gates) - released)
        return asyncio.ensure_future(_after(gate, statements))

    async def _after(gate: asyncio.Future[None], statements: Sequence[Statement]) -> None:
        await gate
        await submit(statements)

    monkeypatch.setattr(core.app.store, "submit", held_submit)
    call = core.chat.SendMany()
    sends = [
        chat_pb2.RelayedSend(id=i, send=chat_pb2.SendMessageRequest(tier="free", content=f"m{i}"))
        for i in range(10)
    ]
    await call.write(chat_pb2.SendManyRequest(sends=sends))
    await eventually(lambda: len(gates) == 3)
    for i in range(10):
        released += 1
        gates[i].set_result(None)
        await eventually(lambda i=i: len(gates) == min(10, i + 4))  # one more admitted, no more
    assert most == 3
    results: list[chat_pb2.SendResult] = []
    while len(results) < 10:
        msg = await asyncio.wait_for(call.read(), 5)
        results.extend(msg.results)
    assert sorted(r.id for r in results) == list(range(10))
    assert all(r.HasField("sent") for r in results)
    await call.done_writing()
