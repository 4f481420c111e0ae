"""The token meter."""

from __future__ import annotations

from core.jobs.stats import TokenMeter


def test_token_meter_averages_whole_seconds() -> None:
    m = TokenMeter(window=5)
    for sec in range(100, 110):
        m.add(50, now=sec + 0.5)
    assert m.rate(now=110.2) == 50.0
    assert m.rate(now=200.0) == 0.0
