"""The relay's SSE path: batched `pieces` and single `chunk` messages from the core become one
`event: chunk` per piece, with consecutive ids, and writes coalesce under load."""

from __future__ import annotations

import asyncio

import pytest

from facade.frames import Coalescer
from facade.relay.stream import RelayStream
from tests.helpers.fakecore import admitted, chunk, done, pieces, scripted_relay
from tests.helpers.sse import read_sse
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)

BODY = {"message": "Hello", "max_tokens": 1024}


async def test_pieces_and_single_chunks_become_one_chunk_event_each() -> None:
    async with scripted_relay() as (core, http):
        core.play(
            [
                admitted(1),
                chunk(2, "Hel"),
                pieces(3, ["lo", ", ", "wör"]),
                chunk(6, "ld"),
                pieces(7, ["!"]),
                done(8, b'{"text":"Hello, w\xc3\xb6rld!"}'),
                None,
            ]
        )
        status, events = await read_sse(http, "/chat/stream", method="POST", json=BODY)
        assert status == 200
        chunks = [(e["id"], e["data"]) for e in events if e["event"] == "chunk"]
        assert chunks == [
            ("2", {"text": "Hel"}),
            ("3", {"text": "lo"}),
            ("4", {"text": ", "}),
            ("5", {"text": "wör"}),
            ("6", {"text": "ld"}),
            ("7", {"text": "!"}),
        ]
        assert [(e["event"], e["id"]) for e in events[-1:]] == [("done", "8")]
        assert events[-1]["data"] == {
            "envelope": {"text": "Hello, wörld!"},
            "signature": "sig",
            "key_id": "kid",
        }


async def test_a_stream_cut_after_pieces_ends_with_an_error_event_after_the_last_piece() -> None:
    async with scripted_relay() as (core, http):
        core.play([admitted(1), pieces(2, ["a", "b", "c"]), None])  # ends without a verdict
        status, events = await read_sse(http, "/chat/stream", method="POST", json=BODY)
        assert status == 200
        assert [(e["event"], e["id"]) for e in events] == [
            ("chunk", "2"),
            ("chunk", "3"),
            ("chunk", "4"),
            ("error", "5"),
        ]
        assert events[-1]["data"]["envelope"]["partial"] is True


class FakeCall:
    """A ChatStream call whose messages the test hands over one by one."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[object] = asyncio.Queue()
        self.reading = False
        self.cancelled = False

    async def read(self) -> object:
        self.reading = True
        try:
            return await self.messages.get()
        finally:
            self.reading = False

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def consumed(self) -> bool:
        """Everything handed over was read, and the reader waits for more."""
        return self.reading and self.messages.empty()


def chunk_frame(seq: int, text: str) -> bytes:
    return b'event: chunk\nid: %d\ndata: {"text":"%s"}\n\n' % (seq, text.encode())


async def test_writes_coalesce_the_first_at_once_then_per_window_and_the_verdict_at_once() -> None:
    call = FakeCall()
    # A window far longer than the test: only the "at once" wake-ups can happen here.
    events = RelayStream(call, seq=1, coalescer=Coalescer(window_s=600.0))
    first = asyncio.create_task(anext(events))
    call.messages.put_nowait(chunk(2, "a"))
    assert await asyncio.wait_for(first, 5) == chunk_frame(2, "a")  # after a quiet spell: at once
    second = asyncio.create_task(anext(events))  # the writer waits again...
    call.messages.put_nowait(chunk(3, "b"))  # ...and these arrive within the window:
    await eventually(call.consumed)
    call.messages.put_nowait(pieces(4, ["c", "d"]))
    await eventually(call.consumed)
    assert not second.done()  # buffered, not written one by one
    call.messages.put_nowait(done(6, b'{"v":1}'))  # the verdict goes at once, with all that waited
    written = await asyncio.wait_for(second, 5)
    assert written == (
        chunk_frame(3, "b")
        + chunk_frame(4, "c")
        + chunk_frame(5, "d")
        + b'event: done\nid: 6\ndata: {"envelope":{"v":1},"signature":"sig","key_id":"kid"}\n\n'
    )
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)
    await events.aclose()
    assert call.cancelled
