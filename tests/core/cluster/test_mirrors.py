"""A mirror of a job another core ran, ended from the store (no core told it): its readers get the stored
answer's tokens they have not seen before ``done``, or the "lost" error if they saw another answer."""

from __future__ import annotations

import pytest

from core.cluster.mirrors import LOST, RemoteLogs
from core.streams.log import Terminal

pytestmark = pytest.mark.timeout(10)


async def nowhere(core_id: str) -> str | None:
    return None


async def test_a_mirror_ended_from_the_store_gives_the_tokens_before_done() -> None:
    remote = RemoteLogs(address=nowhere, metadata=())
    log = remote.follow("job_a", "")
    remote.ended("job_a", Terminal("done", tokens=3), ["a ", "b ", "c"], 1)
    assert log.tokens == ["a ", "b ", "c"]
    assert log.terminal == Terminal("done", tokens=3)
    assert remote.find("job_a") is None


async def test_a_mirror_that_showed_part_of_the_answer_gets_the_rest() -> None:
    remote = RemoteLogs(address=nowhere, metadata=())
    log = remote.follow("job_b", "")
    log.answer = 1
    log.append(["a "])
    remote.ended("job_b", Terminal("done", tokens=3), ["a ", "b ", "c"], 1)
    assert log.tokens == ["a ", "b ", "c"] and log.terminal == Terminal("done", tokens=3)


@pytest.mark.parametrize(("seen", "answer"), [(["x "], 1), (["a "], 2)])
async def test_a_mirror_that_showed_another_answer_ends_lost(seen: list[str], answer: int) -> None:
    remote = RemoteLogs(address=nowhere, metadata=())
    log = remote.follow("job_c", "")
    log.answer = 1
    log.append(seen)
    remote.ended("job_c", Terminal("done", tokens=3), ["a ", "b ", "c"], answer)
    assert log.tokens == seen  # nothing of the other answer joined to it
    assert log.terminal is not None and log.terminal.kind == "error" and log.terminal.message == LOST
