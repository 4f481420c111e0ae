"""The fair tier queues."""

from __future__ import annotations

from core.jobs.queue import LocalQueues, TierQueue


def test_tier_queue_is_fifo_per_caller_and_fair_between_callers() -> None:
    q = TierQueue()
    for i in range(3):
        q.push("alice", f"a{i}")
    q.push("bob", "b0")
    q.push("alice", "a-retry", front=True)
    assert [q.pop() for _ in range(5)] == ["a-retry", "b0", "a0", "a1", "a2"]
    assert q.pop() is None and len(q) == 0


def test_local_queues_count_depth_per_tier_and_remove() -> None:
    q = LocalQueues()
    q.push("free", "u", "f1")
    q.push("pro", "u", "p1")
    q.push("pro", "v", "p2")
    assert (q.depth(), q.depth("pro"), q.depth("free")) == (3, 2, 1)
    assert q.remove("pro", "u", "p1") and not q.remove("pro", "u", "p1")
    assert q.peek("pro") == "p2" and q.pop("pro") == "p2" and q.pop("pro") is None
