"""Units: the group-commit store, the fair tier queues, economics, the token meter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.dispatch import Scheduler, TierQueue, WorkerSlotView
from core.economics import TIERS, TIERS_BY_PRIORITY, Tier, _validate
from core.stats import TokenMeter
from core.store import Store, StoreError

pytestmark = pytest.mark.timeout(30)


async def test_group_commit_batches_and_isolates_a_bad_unit(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", synchronous="NORMAL")
    await store.open()
    try:
        ok = [
            store.write(
                [
                    (
                        "INSERT INTO conversations (id, owner, created_at) VALUES (?, 'o', 0)",
                        (f"conv_{i:010d}",),
                    )
                ]
            )
            for i in range(300)
        ]
        bad = store.write(
            [
                ("INSERT INTO conversations (id, owner, created_at) VALUES ('conv_dup', 'o', 0)", ()),
                ("INSERT INTO conversations (id, owner, created_at) VALUES ('conv_dup', 'o', 0)", ()),
            ]
        )
        results = await asyncio.gather(*ok, bad, return_exceptions=True)
        assert all(r is None for r in results[:-1])
        assert isinstance(results[-1], StoreError)
        assert await store.fetchone("SELECT COUNT(*) FROM conversations") == (300,)
        assert store.batches < 300  # many writes share a commit
    finally:
        await store.close()
    # durable: a new store on the same file sees everything acknowledged
    again = Store(tmp_path / "s.db")
    await again.open()
    try:
        assert await again.fetchone("SELECT COUNT(*) FROM conversations") == (300,)
    finally:
        await again.close()


def test_tier_queue_is_fifo_per_caller_and_fair_between_callers() -> None:
    q = TierQueue()
    for i in range(3):
        q.push("alice", f"a{i}")
    q.push("bob", "b0")
    q.push("alice", "a-retry", front=True)
    assert [q.pop() for _ in range(5)] == ["a-retry", "b0", "a0", "a1", "a2"]
    assert q.pop() is None and len(q) == 0


def test_scheduler_picks_least_loaded_worker_with_the_tier() -> None:
    s = Scheduler()
    pushed: list[tuple[str, str]] = []
    a = WorkerSlotView("wa", frozenset({"free"}), 2, lambda j: pushed.append(("wa", j)), lambda j, r: None)
    b = WorkerSlotView(
        "wb", frozenset({"free", "pro"}), 2, lambda j: pushed.append(("wb", j)), lambda j, r: None
    )
    s.workers = {"wa": a, "wb": b}
    s.enqueue("pro", "u", "p1")
    s.enqueue("free", "u", "f1")
    w, job = s.next_assignment() or (None, None)
    assert (w, job) == (b, "p1")  # pro first, and only wb serves it
    b.running.add("p1")
    w, job = s.next_assignment() or (None, None)
    assert (w, job) == (a, "f1")  # wa is less loaded
    assert s.next_assignment() is None
    b.draining = True
    s.enqueue("pro", "u", "p2")
    assert s.next_assignment() is None  # a draining worker takes nothing


def test_a_retried_job_goes_to_another_worker_when_there_is_one() -> None:
    s = Scheduler()
    a = WorkerSlotView("wa", frozenset({"free"}), 4, lambda j: None, lambda j, r: None)
    b = WorkerSlotView("wb", frozenset({"free"}), 4, lambda j: None, lambda j, r: None)
    b.running.update({"x", "y", "z"})  # wb is busier, yet the job stalled on wa
    s.workers = {"wa": a, "wb": b}
    s.enqueue("free", "u", "j1")
    assert s.next_assignment(lambda job: "wa" if job == "j1" else "") == (b, "j1")
    del s.workers["wb"]
    s.enqueue("free", "u", "j1")
    assert s.next_assignment(lambda job: "wa") == (a, "j1")  # the only worker left still gets it


def test_economics_are_consistent() -> None:
    assert TIERS_BY_PRIORITY[0] == "ultra" and TIERS_BY_PRIORITY[-1] == "free"
    for tier in TIERS.values():
        for amount in (0, 1, 3, 10, 999):
            assert sum(tier.split(amount)) == amount
    with pytest.raises(ValueError):
        _validate((Tier("x", "m", 1, 1, 0, 5000, 5000, 1),))
    with pytest.raises(ValueError):
        _validate((Tier("x", "m", -1, 1, 0, 5000, 5000, 0),))


def test_token_meter_averages_whole_seconds() -> None:
    m = TokenMeter(window=5)
    for sec in range(100, 110):
        m.add(50, now=sec + 0.5)
    assert m.rate(now=110.2) == 50.0
    assert m.rate(now=200.0) == 0.0
