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


def _sequential(conns: list[Connection], jobs: int, *, seconds: float = 1.0) -> dict[str, int]:
    """Jobs one after another (each ends before the next comes), on a virtual clock: who gets each."""
    got = dict.fromkeys((c.worker_id for c in conns), 0)
    now = 1000.0
    for i in range(jobs):
        c = choose(conns, "free", now=now)
        assert c is not None
        got[c.worker_id] += 1
        c.last_assigned = now
        c.running.add(f"job{i}")
        now += seconds
        c.running.clear()
    return got


def test_sequential_jobs_rotate_between_equal_workers() -> None:
    a, b = _conn("wa", {"free"}, 4), _conn("wb", {"free"}, 4)
    assert _sequential([a, b], 10) == {"wa": 5, "wb": 5}


def test_a_slower_or_smaller_worker_gets_fewer_jobs_but_is_never_starved() -> None:
    fast = _conn("fast", {"free"}, 8)
    slow = _conn("slow", {"free"}, 1)
    fast.pace, slow.pace = 400.0, 20.0  # the slow one counts as a quarter of the fast one, not 1/20
    got = _sequential([fast, slow], 200)
    assert got["fast"] > got["slow"] >= 3, got


def test_a_worker_never_measured_nor_given_a_job_goes_first() -> None:
    seasoned = _conn("old", {"free"}, 8, last=500.0)
    seasoned.pace = 1000.0
    newcomer = _conn("new", {"free"}, 1)
    assert choose([seasoned, newcomer], "free", now=501.0) is newcomer


def test_between_equally_idle_workers_more_room_and_a_better_pace_win() -> None:
    small, big = _conn("small", {"free"}, 2, last=10.0), _conn("big", {"free"}, 8, last=10.0)
    assert choose([small, big], "free", now=20.0) is big
    slow, quick = _conn("slow", {"free"}, 4, last=10.0), _conn("quick", {"free"}, 4, last=10.0)
    slow.pace, quick.pace = 10.0, 30.0
    assert choose([slow, quick], "free", now=20.0) is quick


def test_a_continuing_job_goes_only_to_a_worker_that_continues_answers() -> None:
    plain = _conn("plain", {"free"}, 4)
    plain.continues_prefix = False
    able = _conn("able", {"free"}, 4, running=3)
    able.continues_prefix = True
    assert choose([plain, able], "free", continuing=True) is able
    assert choose([plain], "free", continuing=True) is None


def test_equal_workers_share_whatever_trust_they_have_earned() -> None:
    # One of two equal workers has earned many slots (it answered first), the other is on probation:
    # under a light load both have room, so both get a share.
    veteran, newcomer = _conn("vet", {"free"}, 256), _conn("new", {"free"}, 256)
    veteran.trusted, newcomer.trusted = 200, 2
    got = _sequential([veteran, newcomer], 100)
    assert got["new"] >= 40 and got["vet"] >= 40, got
