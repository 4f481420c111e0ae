"""The core's /metrics: every metric is there from the start, and the figures move as a job goes
through (queue, hand-out, tokens, outcome, store commits, refusals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from core.jobs.model import JobState
from tests.helpers.core import Core, connect_worker, core_settings, start_core, stop_core
from tests.helpers.metrics import Samples, value
from tests.helpers.metrics import scrape as scrape_url
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(30)

NAMES = {
    "ashao_queue_depth",
    "ashao_queue_oldest_wait_seconds",
    "ashao_dispatch_latency_seconds_count",
    "ashao_time_to_first_token_seconds_count",
    "ashao_jobs_total",
    "ashao_jobs_live",
    "ashao_jobs_streaming",
    "ashao_tokens_total",
    "ashao_tokens_per_second",
    "ashao_writes_pending",
    "ashao_workers_connected",
    "ashao_worker_slots",
    "ashao_worker_slots_busy",
    "ashao_store_commits_total",
    "ashao_store_statements_total",
    "ashao_store_commit_seconds_count",
    "ashao_relay_breaker_state",
    "ashao_event_loop_lag_seconds",
    "process_resident_memory_bytes",
}


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    c = await start_core(core_settings(tmp_path, metrics_addr="127.0.0.1:0"))
    try:
        yield c
    finally:
        await stop_core(c)


async def scrape(core: Core) -> Samples:
    return await scrape_url(f"http://{core.app.metrics_address}/metrics")


async def test_every_metric_is_there_and_moves_with_a_job(core: Core) -> None:
    before = await scrape(core)
    assert NAMES <= {name for name, _ in before}
    assert value(before, "ashao_tokens_total") == 0
    assert value(before, "ashao_jobs_total", outcome="done") == 0
    assert value(before, "ashao_relay_breaker_state", provider="network", state="closed") == 1
    assert value(before, "ashao_relay_breaker_state", provider="network", state="open") == 0

    job_id, _ = await core.send()  # no worker yet: it waits
    queued = await scrape(core)
    assert value(queued, "ashao_queue_depth", tier="free") == 1
    assert value(queued, "ashao_queue_depth", tier="pro") == 0
    assert value(queued, "ashao_jobs_live") == 1

    worker = await connect_worker(core, slots=2)
    await worker.assignment()
    await worker.tokens(job_id, ["a", "b", "c"], offset=0)
    await worker.complete(job_id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await core.send(tier="gold")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    await eventually(lambda: core.app.jobs.board.ended_by_state[JobState.DONE] == 1)
    after = await scrape(core)
    assert value(after, "ashao_tokens_total") == 3
    assert value(after, "ashao_queue_depth", tier="free") == 0
    assert value(after, "ashao_dispatch_latency_seconds_count") == 1
    assert value(after, "ashao_time_to_first_token_seconds_count") == 1
    assert value(after, "ashao_workers_connected") == 1 and value(after, "ashao_worker_slots") == 2
    assert value(after, "ashao_store_commits_total") > value(before, "ashao_store_commits_total")
    assert value(after, "ashao_store_commit_seconds_count") > value(
        before, "ashao_store_commit_seconds_count"
    )
    method = "/ashao.v1.ChatService/SendMessage"
    assert value(after, "ashao_grpc_errors_total", method=method, code="INVALID_ARGUMENT") == 1


async def test_no_listener_unless_an_address_is_set(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path))
    try:
        assert c.app.metrics is None and c.app.metrics_address == ""
    finally:
        await stop_core(c)
