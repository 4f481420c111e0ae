"""A paced Subscribe stream: first tokens and watch answers at once, later tokens together."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from ashao_common.pacing import Pace
from core.streams.fanout import Accepted, Answer, Multiplexer
from core.streams.log import Events, JobLog, Terminal

pytestmark = pytest.mark.timeout(30)


@dataclass(slots=True)
class SubEvents:
    """New events of one subscription, as one message of the stream carries them."""

    sub_id: int
    events: Events


async def next_batch(mux: Multiplexer) -> list[Answer | SubEvents]:
    """The next message of the stream, as items: the watch answers, then each subscription's events."""
    batch: list[Answer | SubEvents] = []

    def emit(sub_id: int, events: Events) -> None:
        batch.append(SubEvents(sub_id, events))

    return batch if await mux.next_message(batch.append, emit) else []


def paced(logs: dict[str, JobLog], window_s: float) -> Multiplexer:
    async def open_log(job_id: str, principal: Any) -> tuple[JobLog, str]:
        return logs[job_id], "streaming"

    async def anyone() -> str:
        return "user"

    mux = Multiplexer(open_log, max_tokens_per_message=100, pace=Pace(max_s=window_s, full_rate=1.0))
    mux.pace.window_s = window_s  # as if it had measured a heavy load already
    mux.anyone = anyone  # type: ignore[attr-defined]
    return mux


async def test_first_tokens_go_at_once_even_with_a_long_window() -> None:
    log = JobLog("j1")
    mux = paced({"j1": log}, window_s=60.0)
    await mux.watch(1, "j1", 0, mux.anyone)  # type: ignore[attr-defined]
    first = await asyncio.wait_for(next_batch(mux), 5)
    assert isinstance(first[0], Accepted)
    mux.pace.window_s = 60.0
    log.append(["a"])  # the subscription's first token: no waiting for the window
    batch = await asyncio.wait_for(next_batch(mux), 5)
    assert [item.events.tokens for item in batch if isinstance(item, SubEvents)] == [["a"]]
    mux.close()


async def test_tokens_within_the_window_go_in_one_event() -> None:
    logs = {"j1": JobLog("j1"), "j2": JobLog("j2")}
    mux = paced(logs, window_s=0.2)
    for i, job in enumerate(logs, 1):
        await mux.watch(i, job, 0, mux.anyone)  # type: ignore[attr-defined]
        logs[job].append([f"{job}-0"])
    await asyncio.wait_for(next_batch(mux), 5)  # the answers and the first tokens
    mux.pace.window_s = 1.0
    writer = asyncio.create_task(next_batch(mux))
    for n in range(1, 4):
        for job in logs:
            logs[job].append([f"{job}-{n}"])
        for _ in range(5):  # an unpaced writer would take what is there now
            await asyncio.sleep(0)
    logs["j2"].finish(Terminal("done", tokens=4))
    batch = await asyncio.wait_for(writer, 5)
    events = {item.sub_id: item.events for item in batch if isinstance(item, SubEvents)}
    assert events[1].tokens == ["j1-1", "j1-2", "j1-3"]
    assert events[2].tokens == ["j2-1", "j2-2", "j2-3"]
    assert events[2].terminal is not None and events[2].terminal.kind == "done"
    mux.close()
