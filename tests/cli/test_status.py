"""``ashao status`` and the operator's worker commands against a real core; ``ashao --version``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from pathlib import Path

import pytest

from ashao_cli.main import main
from ashao_cli.operator import workers
from ashao_cli.status import status
from tests.helpers.core import Core, collect, connect_worker, core_settings, start_core, stop_core
from tests.helpers.net import free_port
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    c = await start_core(core_settings(tmp_path, worker_probation_slots=2))
    try:
        yield c
    finally:
        await stop_core(c)


async def cli(
    command: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run a command in a thread (its blocking calls must not stop the core in this event loop)."""
    code = await asyncio.to_thread(command, argv)
    out, err = capsys.readouterr()
    return code, out, err


async def test_status_shows_workers_slots_queues_and_followers(
    core: Core, capsys: pytest.CaptureFixture[str]
) -> None:
    worker = await connect_worker(core, slots=1, tiers=("free",))
    running, _ = await core.send("first")
    queued, _ = await core.send("second")
    assert (await worker.assignment()).job_id == running
    await worker.tokens(running, ["a", "b"])
    follower = asyncio.create_task(collect(core, running, timeout=30))
    await eventually(lambda: core.app.jobs.load().followers == 1)
    where = ["--core", core.app.address, "--data-dir", str(core.app.settings.data_dir)]

    code, out, err = await cli(status, where, capsys)
    assert code == 0 and err == ""
    assert "1 worker(s) connected" in out and "slots 1/1 busy" in out and "1 follower(s)" in out
    free = next(line.split() for line in out.splitlines() if line.startswith("free "))
    assert free[:3] == ["free", "1", "1"]  # tier, queued, running
    assert worker.worker_id in out and "connected" in out

    code, out, _ = await cli(status, [*where, "--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["core"] == core.app.address
    net = doc["network"]
    assert (net["queue_depth"], net["busy_slots"], net["jobs_streaming"], net["followers"]) == (1, 1, 1, 1)
    tiers = {t["tier"]: t for t in doc["tiers"]}
    assert set(tiers) == {"free", "basic", "pro", "ultra", "image"}
    assert (tiers["free"]["queued"], tiers["free"]["running"], tiers["free"]["workers"]) == (1, 1, 1)
    assert tiers["pro"]["workers"] == 0 and tiers["free"]["oldest_wait_s"] > 0
    (w,) = doc["workers"]
    assert (w["worker_id"], w["running"], w["trusted_slots"], w["connected"]) == (
        worker.worker_id,
        1,
        1,
        True,
    )

    await worker.complete(running)
    assert [e[1] for e in await follower] == ["token", "token", "done"]
    assert (await worker.assignment()).job_id == queued
    await eventually(lambda: core.app.jobs.load().tiers[-1].queued == 0)
    code, out, _ = await cli(status, [*where, "--json"], capsys)
    (w,) = json.loads(out)["workers"]
    assert w["delivered"] == 1 and w["answer_tokens_per_sec"] > 0
    worker.cancel()


async def test_status_without_the_operator_token_leaves_the_workers_out(
    core: Core, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--core", core.app.address, "--data-dir", str(tmp_path / "elsewhere")]
    code, out, err = await cli(status, argv, capsys)
    assert code == 0 and "worker(s) connected" in out and "wrk_" not in out
    assert "workers: not shown (no operator token" in err
    code, out, _ = await cli(status, [*argv, "--json"], capsys)
    assert code == 0 and json.loads(out)["workers"] is None


async def test_status_of_an_unreachable_core_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await cli(status, ["--core", f"127.0.0.1:{free_port()}", "--timeout-s", "2"], capsys)
    assert code == 1 and "ashao status: cannot read 127.0.0.1:" in err and "UNAVAILABLE" in err


async def test_workers_list_and_revoke_by_position_or_variable(
    core: Core, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await connect_worker(core, slots=2)
    second = await connect_worker(core, slots=2)
    where = ["--core", core.app.address, "--data-dir", str(core.app.settings.data_dir)]
    code, out, _ = await cli(workers, ["list", *where, "--json"], capsys)
    assert code == 0 and {w["worker_id"] for w in json.loads(out)} == {first.worker_id, second.worker_id}
    code, out, _ = await cli(workers, ["revoke", first.worker_id, *where], capsys)
    assert (code, out.strip()) == (0, f"revoked {first.worker_id}")
    monkeypatch.setenv("ASHAO_REVOKE_WORKER_ID", second.worker_id)
    code, out, _ = await cli(workers, ["revoke", *where], capsys)
    assert (code, out.strip()) == (0, f"revoked {second.worker_id}")
    code, out, _ = await cli(workers, ["list", *where], capsys)
    assert code == 0 and out.startswith("worker ") and "wrk_" not in out  # revoked workers are gone
    code, _, err = await cli(workers, ["revoke", "wrk_unknown", *where], capsys)
    assert code == 1 and "NOT_FOUND" in err
    first.cancel()
    second.cancel()


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    for flag in ("--version", "-V"):
        assert main([flag]) == 0
        assert capsys.readouterr().out.strip() == f"ashao {metadata.version('ashao')}"


async def test_status_of_several_cores_shows_each_and_the_totals(
    core: Core, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = await start_core(core_settings(tmp_path / "other", worker_probation_slots=4))
    try:
        here = await connect_worker(core, slots=1, tiers=("free",))
        there = await connect_worker(other, slots=3, tiers=("free",))
        await eventually(lambda: other.app.jobs.load().slots == 3)
        gone = f"127.0.0.1:{free_port()}"
        addrs = [core.app.address, other.app.address, gone]
        where = ["--core", ",".join(addrs), "--data-dir", str(core.app.settings.data_dir), "--timeout-s", "2"]

        code, out, err = await cli(status, where, capsys)
        assert code == 1 and f"ashao status: cannot read {gone}: UNAVAILABLE" in err
        assert f"core {core.app.address}: 1 worker(s) connected" in out and "slots 0/1 busy" in out
        assert f"core {other.app.address}: 1 worker(s) connected" in out and "slots 0/3 busy" in out
        assert f"core {gone}: not answering (UNAVAILABLE" in out
        assert "cluster: 2 of 3 core(s) answering, 2 worker(s) connected, slots 0/4 busy" in out
        assert here.worker_id in out  # the workers of the first core that answers

        code, out, _ = await cli(status, [*where, "--json"], capsys)
        doc = json.loads(out)
        assert code == 1 and [c["core"] for c in doc["cores"]] == addrs
        assert [c["network"]["slots"] for c in doc["cores"][:2]] == [1, 3]
        assert doc["cores"][2]["error"].startswith("UNAVAILABLE")
        assert doc["cluster"]["slots"] == 4 and doc["cluster"]["connected_workers"] == 2
        assert [w["worker_id"] for w in doc["workers"]] == [here.worker_id]
        here.cancel()
        there.cancel()
    finally:
        await stop_core(other)
