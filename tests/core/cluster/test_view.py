"""The cluster's figures as one core shows them: a job done on any core counts on every core once that
core has reported, not only when the store's count is read again."""

from __future__ import annotations

from core.cluster.view import ClusterView
from core.jobs.stats import JobsSnapshot


def snapshot(done: int) -> JobsSnapshot:
    return JobsSnapshot(
        active_workers=0,
        live_workers=0,
        slots=0,
        busy_slots=0,
        queue_depth=0,
        oldest_wait_s=0.0,
        stalled_queued=0,
        jobs_streaming=0,
        jobs_completed=done,
        tokens_per_sec=0.0,
        recent_outcomes=0,
        recent_failures=0,
        last_send_at=0.0,
    )


def test_jobs_done_on_another_core_count_from_its_next_report() -> None:
    view = ClusterView()
    other = ClusterView.report(snapshot(7), ["free"], "core_b")
    view.take([other])
    view.counted(jobs_completed=10, own_completed=3)  # the store: 10 done in the whole network
    assert view.merged(snapshot(3)).jobs_completed == 10

    view.take([ClusterView.report(snapshot(9), ["free"], "core_b")])  # b finished two more
    assert view.merged(snapshot(4)).jobs_completed == 13  # and this core one

    view.counted(jobs_completed=13, own_completed=4)  # the store caught up: nothing counted twice
    assert view.merged(snapshot(4)).jobs_completed == 13


def test_a_core_that_stops_reporting_keeps_its_count_until_the_store_is_read() -> None:
    view = ClusterView()
    view.take([ClusterView.report(snapshot(0), [], "core_b")])
    view.counted(jobs_completed=0, own_completed=0)
    view.take([ClusterView.report(snapshot(5), [], "core_b")])
    view.take([])  # b is gone
    assert view.merged(snapshot(0)).jobs_completed == 5


def test_a_report_without_a_count_or_with_a_bad_one_adds_nothing() -> None:
    view = ClusterView()
    view.counted(jobs_completed=4, own_completed=0)
    old = ClusterView.report(snapshot(2), [], "")  # a core of an older version names no id
    view.take([old, '{"core": "core_c", "jobs_completed": "many"}', "not json"])
    view.take(['{"core": "core_c", "jobs_completed": true}'])
    assert view.merged(snapshot(0)).jobs_completed == 4
