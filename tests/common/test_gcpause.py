"""Collector pauses are timed, logged on request and shown on /metrics."""

from __future__ import annotations

import gc
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from ashao_common import gcpause


def test_every_collection_is_timed_and_logged(tmp_path: Path) -> None:
    log = tmp_path / "gc.log"
    watch = gcpause.PauseWatch(str(log)).install()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        watch.uninstall()
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) >= 2
    assert [parts[1] for parts in lines[:2]] == ["2", "0"]
    assert all(len(parts) == 4 and all(p.lstrip("-").isdigit() for p in parts) for parts in lines)
    assert sum(watch.pauses.counts) == len(lines)
    assert watch.max_s > 0
    gc.collect()  # uninstalled: nothing more is counted
    assert sum(watch.pauses.counts) == len(lines)


def test_the_pauses_are_on_the_metrics_page() -> None:
    watch = gcpause.watch()
    gc.collect()
    registry = CollectorRegistry()
    registry.register(gcpause.PauseCollector())
    page = generate_latest(registry).decode()
    assert "ashao_gc_pause_seconds_count" in page
    assert "ashao_gc_pause_max_seconds" in page
    assert watch.max_s > 0


def test_settle_freezes_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        gcpause.settle((5000, 7, 300))
        assert gc.get_threshold() == (5000, 7, 300)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
