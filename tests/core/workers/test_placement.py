"""Which connected worker takes a job."""

from __future__ import annotations

from core.workers.links import Connection
from core.workers.placement import choose


class _Link:
    def assign(self, job_id: str) -> None:
        pass

    def cancel(self, job_id: str, reason: str) -> None:
        pass

    def close(self, reason: str) -> None:
        pass


def _conn(worker_id: str, tiers: set[str], slots: int, running: int = 0, last: float = 0.0) -> Connection:
    c = Connection(worker_id, frozenset(tiers), slots, _Link())
    c.running.update(f"{worker_id}-{i}" for i in range(running))
    c.last_assigned = last
    return c


def test_least_loaded_worker_serving_the_tier() -> None:
    a = _conn("wa", {"free"}, 2)
    b = _conn("wb", {"free", "pro"}, 2, running=1)
    assert choose([a, b], "pro") is b  # only wb serves pro
    assert choose([a, b], "free") is a  # wa is less loaded
    b.running.add("more")
    assert choose([b], "pro") is None  # full
    a.draining = True
    assert choose([a], "free") is None  # a draining worker takes nothing


def test_the_shunned_worker_is_a_last_resort() -> None:
    a = _conn("wa", {"free"}, 4)
    b = _conn("wb", {"free"}, 4, running=3)  # busier, yet the job stalled on wa
    assert choose([a, b], "free", shunned="wa") is b
    assert choose([a], "free", shunned="wa") is a  # the only worker left still gets it


def test_ties_go_to_the_worker_idle_longest() -> None:
    first = _conn("w1", {"free"}, 8, last=10.0)
    second = _conn("w2", {"free"}, 8, last=5.0)
    assert choose([first, second], "free") is second
    second.last_assigned = 20.0
    assert choose([first, second], "free") is first
