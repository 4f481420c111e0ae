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


class Pieces:
    """A provider answering 50 pieces ``<prefix><i> ``; between two, one pass of the event loop if
    ``yields`` (each piece a socket read of its own) or none (its whole answer at once: a fast
    upstream, or one read of a busy socket)."""

    is_floor = False

    def __init__(self, prefix: str, *, yields: bool) -> None:
        self.name, self.model_id, self._prefix, self._yields = prefix, f"{prefix}-model", prefix, yields

    def healthy(self) -> bool:
        return True

    async def stream(
        self, messages: list[dict[str, str]], max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        for i in range(50):
            if self._yields:
                await asyncio.sleep(0)
            yield f"{self._prefix}{i} "


async def test_pieces_produced_together_travel_together(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:
        core.app.relay.cascade = Cascade([Pieces("p", yields=False)])
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


async def test_pieces_within_the_flush_window_travel_together(tmp_path: Path) -> None:
    core, relay = await relay_core(tmp_path)
    try:
        core.app.relay.cascade = Cascade([Pieces("t", yields=True)])
        core.app.relay.flush_s = 5.0  # longer than the whole answer takes: the end flushes it at once
        request = relay_pb2.ChatStreamRequest(prompt=relay_pb2.RelayPrompt(message="hi", max_tokens=1024))
        messages = [m async for m in relay.ChatStream(request)]
        kinds = [m.WhichOneof("event") for m in messages]
        assert kinds == ["admitted", "chunk", "pieces", "done"], kinds
        assert list(messages[2].pieces.texts) == [f"t{i} " for i in range(1, 50)]
        assert messages[0].admitted.provider_wait_ms >= 0
    finally:
        await stop_core(core)
