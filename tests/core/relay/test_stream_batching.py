"""The relay's stream carries pieces produced together in one message, not one message per piece."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from ashao.v1 import relay_pb2
from core.relay.cascade import Cascade
from core.relay.providers import Usage
from tests.core.relay.test_relay import relay_core
from tests.helpers.core import stop_core

pytestmark = pytest.mark.timeout(30)


class Burst:
    """A provider that has its whole answer at once (a fast upstream, or one read of a busy socket)."""

    name = "burst"
    model_id = "burst-model"
    is_floor = False

    def healthy(self) -> bool:
        return True

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        for i in range(50):
            yield f"p{i} "


async def test_pieces_produced_together_travel_together(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:
        core.app.relay.cascade = Cascade([Burst()])
        request = relay_pb2.ChatStreamRequest(prompt=relay_pb2.RelayPrompt(message="hi", max_tokens=1024))
        messages = [m async for m in relay.ChatStream(request)]
        kinds = [m.WhichOneof("event") for m in messages]
        assert kinds[0] == "admitted" and kinds[-1] == "done"
        texts: list[tuple[int, str]] = []
        for m in messages[1:-1]:
            if m.WhichOneof("event") == "chunk":
                texts.append((m.seq, m.chunk))
            else:
                texts.extend((m.seq + i, t) for i, t in enumerate(m.pieces.texts))
        assert [t for _, t in texts] == [f"p{i} " for i in range(50)]
        assert [s for s, _ in texts] == list(range(2, 52))  # one sequence number per piece, as before
        assert len(messages) <= 4  # admitted, the first piece, the rest together, done
        done = orjson.loads(messages[-1].done.body)
        assert done["verdict"] == "response" and done["text"] == "".join(f"p{i} " for i in range(50))
        assert messages[-1].seq == 52
    finally:
        await stop_core(core)


class Trickle:
    """A provider whose pieces come one socket read at a time, each read a pass of the event loop."""

    name = "trickle"
    model_id = "trickle-model"
    is_floor = False

    def healthy(self) -> bool:
        return True

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        for i in range(50):
            await asyncio.sleep(0)
            yield f"t{i} "


async def test_pieces_within_the_flush_window_travel_together(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:
        core.app.relay.cascade = Cascade([Trickle()])
        core.app.relay.flush_s = 5.0  # longer than the whole answer takes: the end flushes it at once
        request = relay_pb2.ChatStreamRequest(prompt=relay_pb2.RelayPrompt(message="hi", max_tokens=1024))
        messages = [m async for m in relay.ChatStream(request)]
        kinds = [m.WhichOneof("event") for m in messages]
        assert kinds == ["admitted", "chunk", "pieces", "done"], kinds
        assert list(messages[2].pieces.texts) == [f"t{i} " for i in range(1, 50)]
        assert messages[0].admitted.provider_wait_ms >= 0
    finally:
        await stop_core(core)
