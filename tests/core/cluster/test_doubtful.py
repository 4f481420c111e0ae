"""A job waiting in a core's line whose hold may have lapsed (the core lost its link to the cluster, so
another core may have taken the job over): a queued one is handed back; a begun one leaves the line until
the store answers, and is handed out again only if the store still has it as this core's."""

from __future__ import annotations

from typing import Any

import pytest

from core.cluster.node import Node
from core.jobs.repository import JobRepository
from core.store import StoreError
from tests.core.cluster.conftest import StartCores
from tests.helpers.core import Core, StreamWorker, connect_worker
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


async def begun_then_doubtful(core: Core, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any, StreamWorker]:
    """A job whose worker answered a token and left while the core's renewals did not reach NATS and the
    store did not answer: the job is taken out of the line. Returns the job id, the shared queue, and a continuing worker that joined
    meanwhile (it must not be handed the job)."""
    shared = core.app.jobs.shared
    assert shared is not None
    leaving = await connect_worker(core, slots=1)
    job_id, _ = await core.send("begun")
    assert (await leaving.assignment()).job_id == job_id
    await leaving.tokens(job_id, ["one "])
    await eventually(lambda: (j := core.app.jobs.board.get(job_id)) is not None and len(j.log.tokens) == 1)
    standing = shared._repo.standing

    async def unreachable(job_id: str) -> object:
        raise StoreError("the store is unreachable")

    monkeypatch.setattr(shared._repo, "standing", unreachable)
    node = core.app.node
    assert node is not None
    node.queue._held[job_id].confirmed -= 3600  # its renewals never reached NATS: the hold may have lapsed
    leaving.cancel()
    await eventually(lambda: job_id in shared._doubtful)
    waiting = await connect_worker(core, slots=1)
    monkeypatch.setattr(shared._repo, "standing", standing)
    return job_id, shared, waiting


async def test_a_begun_job_the_store_shows_taken_over_is_not_handed_out_when_the_link_returns(
    cores: StartCores, monkeypatch: pytest.MonkeyPatch
) -> None:
    [a] = await cores(1)
    job_id, shared, waiting = await begun_then_doubtful(a, monkeypatch)
    # meanwhile another core took the job over (its hold here had lapsed) and ended it
    await a.app.store.write(
        [JobRepository.held(job_id, "core_elsewhere"), ("UPDATE jobs SET state='done' WHERE id=?", (job_id,))]
    )
    await eventually(lambda: a.app.jobs.board.get(job_id) is None)
    assert job_id not in shared._doubtful
    node = a.app.node
    assert node is not None
    await eventually(lambda: job_id not in node.queue._held)  # (handed back; delivered again, it is dropped)
    other, _ = await a.send("next")
    assert (await waiting.assignment()).job_id == other  # the first it was handed: not the taken-over one


async def test_a_begun_job_still_this_cores_goes_back_to_the_line_and_continues(
    cores: StartCores, monkeypatch: pytest.MonkeyPatch
) -> None:
    [a] = await cores(1)
    job_id, shared, waiting = await begun_then_doubtful(a, monkeypatch)
    assignment = await waiting.assignment(timeout=10)
    assert assignment.job_id == job_id and assignment.prefix == "one "
    assert job_id not in shared._doubtful


async def assigned(core: Core, content: str) -> tuple[Node, StreamWorker, str]:
    """The core's cluster node, and a worker of one slot holding the job of a send of ``content``."""
    node = core.app.node
    assert node is not None
    worker = await connect_worker(core, slots=1)
    job_id, _ = await core.send(content)
    assert (await worker.assignment()).job_id == job_id
    return node, worker, job_id


async def test_a_queued_job_whose_hold_may_have_lapsed_is_handed_back_and_taken_again_from_the_store(
    cores: StartCores,
) -> None:
    [a] = await cores(1)
    node, leaving, job_id = await assigned(a, "queued")
    leaving.cancel()  # no token yet: the job waits in a's line
    await eventually(lambda: (j := a.app.jobs.board.get(job_id)) is not None and j.state.value == "queued")
    pulled = node.queue.pulled
    node.queue._held[job_id].confirmed -= 3600  # its renewals never reached NATS: the hold may have lapsed
    waiting = await connect_worker(a, slots=1)
    assert (await waiting.assignment(timeout=10)).job_id == job_id
    assert node.queue.pulled == pulled + 1  # handed back, then delivered again (and read from the store)


async def test_a_renewal_that_reached_nats_makes_a_hold_fresh_again(cores: StartCores) -> None:
    [a] = await cores(1)
    node, _, job_id = await assigned(a, "long")
    node.queue._held[job_id].confirmed -= 3600
    await node.queue.renew()
    assert node.queue._held[job_id].confirmed > node.queue._held[job_id].since
