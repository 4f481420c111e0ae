"""A worker's share follows what it delivers, not what it claims; a completion without tokens is no
answer and is not paid."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from ashao.v1 import worker_pb2
from core.economics import TIERS
from core.money.ledger import worker_account
from core.workers.standing import Standing
from tests.helpers.core import Core, collect, connect_worker, core_settings, start_core, stop_core

pytestmark = pytest.mark.timeout(30)


def test_standing_grows_with_answers_and_halves_on_failures() -> None:
    s = Standing(earned=2)
    assert s.trusted(1024) == 2 and s.trusted(1) == 1
    for _ in range(6):
        s.delivered_answer(claimed=8)
    assert s.trusted(1024) == 8  # never past what it claims
    s.failed_job()
    assert s.trusted(1024) == 4
    for _ in range(5):
        s.failed_job()
    assert s.trusted(1024) == 1  # never below one


def test_speed_is_measured_from_relayed_tokens() -> None:
    s = Standing()
    for i in range(11):
        s.relayed(50, now=100.0 + i * 0.5)  # 100 tokens a second
    assert 90 <= s.speed <= 110


def test_pace_is_the_speed_of_one_answer_whatever_the_number_of_answers() -> None:
    s = Standing()
    s.answered(0, 1.0)  # an answer without tokens measures nothing
    s.answered(10, 0.0)
    assert s.pace == 0.0
    s.answered(100, 2.0)
    assert s.pace == 50.0
    for _ in range(30):  # many answers at the same pace leave it where it is
        s.answered(100, 2.0)
    assert s.pace == pytest.approx(50.0)
    for _ in range(30):
        s.answered(100, 1.0)  # it got faster: the pace follows
    assert 99.0 < s.pace <= 100.0


async def test_a_worker_claiming_many_slots_gets_few_jobs_until_it_delivers(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, worker_probation_slots=2))
    try:
        rogue = await connect_worker(c, slots=1024)
        jobs = [(await c.send(f"m{i}"))[0] for i in range(6)]
        first = [await rogue.assignment() for _ in range(2)]
        assert c.app.jobs.snapshot().queue_depth == 4  # two at once, whatever it claims
        for a in first:
            await rogue.tokens(a.job_id, ["x"])
            await rogue.complete(a.job_id)
        got = [await rogue.assignment() for _ in range(4)]  # each answer earned it one more slot
        assert {a.job_id for a in first + got} == set(jobs)
    finally:
        await stop_core(c)


async def test_a_completion_without_tokens_is_not_paid_and_goes_elsewhere(core: Core) -> None:
    md = await core.sign_in(credits=0)
    empty = await connect_worker(core, slots=1)
    job_id, _ = await core.send("hi", tier="pro", metadata=md)
    assert (await empty.assignment()).job_id == job_id
    honest = await connect_worker(core, slots=1)
    await empty.complete(job_id)  # nothing produced: the job goes to another worker
    a = await honest.assignment()

    assert (a.job_id, a.attempt) == (job_id, 2)
    await honest.tokens(job_id, ["a", "b"])
    await honest.complete(job_id)
    assert (await collect(core, job_id, metadata=md))[-1][1:] == ("done", 2)
    ledger = core.app.ledger
    assert await ledger.balance(worker_account(empty.worker_id)) == 0
    assert (
        await ledger.balance(worker_account(honest.worker_id))
        == TIERS["pro"].split(TIERS["pro"].credit_cost)[0]
    )


async def test_heartbeats_must_be_finite(core: Core) -> None:
    _, token = await core.register()
    md = (("authorization", f"Bearer {token}"),)
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await core.workers.Heartbeat(worker_pb2.HeartbeatRequest(tokens_per_sec=bad), metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
