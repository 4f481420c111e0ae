"""The supervisor of the facade's background loops: restart after a failure, never a silent end,
cancellation always honoured, an idempotent stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ashao_common.supervise import Supervisor
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(10)


async def test_a_failing_loop_is_logged_with_its_traceback_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        steady.set()
        await asyncio.Event().wait()  # then runs for good

    loops = Supervisor("test", {"flaky": flaky}, backoff_s=0.0)
    with caplog.at_level(logging.ERROR, logger="ashao.supervise"):
        loops.start()
        await asyncio.wait_for(steady.wait(), 5)
    assert runs == [0, 1] and loops.restarts == 1 and loops.running
    record = next(r for r in caplog.records if "flaky" in r.getMessage())
    assert record.exc_info is not None and "first run fails" in caplog.text  # the traceback is logged
    await loops.stop()
    assert not loops.running


async def test_a_loop_that_returns_is_restarted_too(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[None] = []

    async def returns() -> None:
        runs.append(None)

    loops = Supervisor("test", {"returns": returns}, backoff_s=0.0)
    loops.start()
    await eventually(lambda: len(runs) >= 3)
    await loops.stop()
    assert "returned" in caplog.text


async def test_stop_cancels_every_loop_runs_their_cleanup_and_is_idempotent() -> None:
    cleaned: list[str] = []
    started: list[str] = []

    def loop(name: str) -> object:
        async def run() -> None:
            started.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(name)

        return run

    loops = Supervisor("test", {"a": loop("a"), "b": loop("b")})  # type: ignore[dict-item]
    loops.start()
    await eventually(lambda: len(started) == 2)
    await loops.stop()
    assert sorted(cleaned) == ["a", "b"] and loops.restarts == 0  # cancelled, not restarted
    await loops.stop()  # again: nothing to do
    with pytest.raises(RuntimeError):
        loops.start()  # a stopped supervisor stays stopped


async def test_a_cancelled_stopper_still_sees_its_cancellation() -> None:
    cleaning, release, cleaned = asyncio.Event(), asyncio.Event(), asyncio.Event()
    started = asyncio.Event()

    async def slow_cleanup() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()
            cleaned.set()

    loops = Supervisor("test", {"slow": slow_cleanup})
    loops.start()
    await asyncio.wait_for(started.wait(), 5)
    stopper = asyncio.create_task(loops.stop())
    await asyncio.wait_for(cleaning.wait(), 5)  # stop() is waiting for the loop to end
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper  # the cancellation of the caller is not swallowed
    release.set()
    await asyncio.wait_for(cleaned.wait(), 5)
