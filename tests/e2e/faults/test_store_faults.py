"""The store failing under load: its disk full, or its commits failing part-way. Sends refused while
it fails are 503 ``{error}`` (never a 200 for a job that is then lost, never a 500); what was
acknowledged is kept; the service carries on once the store works again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.books import check_books
from tests.helpers.disk import CannotMount, fill, free_bytes, tmpfs
from tests.helpers.faultcase import StartNetwork, busy, mixed_clients, signed_in, summary, url
from tests.helpers.load import Load, wait_workers
from tests.helpers.storefaults import failing, hook_env, injected
from tests.helpers.wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

HOLD_S = 5.0
"""How long the disk stays full once finished answers wait on it to be stored: longer than the core
keeps trying to store an answer before it records a refunded failure instead (the fault's length,
not a wait)."""


def waiting_to_be_stored(load: Load) -> int:
    """Streams that have their whole answer and wait for its end (the store must record it first)."""
    return sum(1 for s in load.streams.values() if s.terminal is None and len(s.tokens) == 40)


async def test_full_disk_refuses_with_503_and_recovers(start_network: StartNetwork, tmp_path: Path) -> None:
    try:
        with tmpfs(tmp_path / "disk", size_mib=64) as disk:
            net = start_network(data_dir=disk / "data")
            try:
                async with Load(url(net)) as load:
                    await wait_workers(load.http, 2)
                    load.start(mixed_clients(await signed_in(load, 4)))
                    await eventually(lambda: busy(load), timeout=30)
                    filler = fill(disk)
                    assert free_bytes(disk) < 4096
                    await eventually(
                        lambda: load.sends["503"] >= 10 and waiting_to_be_stored(load) >= 4, timeout=60
                    )
                    await asyncio.sleep(HOLD_S)
                    refused_at = load.mark()
                    filler.unlink()
                    await eventually(lambda: load.done_since(refused_at) >= 12, timeout=60)
                    load.stop()
                    await load.finish(timeout=90)
            finally:
                net.stop()
            books = check_books(net.data_dir / "ashao.db", load.streams, given_up=load.unacknowledged)
    except CannotMount as exc:
        pytest.skip(f"no small disk for the data directory: {exc}")
    print(summary("full disk", load, books))
    assert not load.problems, load.problems
    assert set(load.sends) <= {"200", "503"}, load.sends


async def test_commits_failing_midway_refuse_with_503_and_recover(
    start_network: StartNetwork, tmp_path: Path
) -> None:
    control = tmp_path / "store-faults"
    net = start_network(env=hook_env(control))
    async with Load(url(net)) as load:
        await wait_workers(load.http, 2)
        load.start(mixed_clients(await signed_in(load, 4)))
        await eventually(lambda: busy(load), timeout=30)
        with failing(control, 0.5):
            await eventually(lambda: load.sends["503"] >= 10 and injected(control) >= 50, timeout=60)
        mark = load.mark()
        await eventually(lambda: load.done_since(mark) >= 12, timeout=60)
        load.stop()
        await load.finish(timeout=90)
    net.stop()
    books = check_books(net.data_dir / "ashao.db", load.streams, given_up=load.unacknowledged)
    print(summary(f"failing commits ({injected(control)} injected)", load, books))
    assert not load.problems, load.problems
    assert set(load.sends) <= {"200", "503"}, load.sends
