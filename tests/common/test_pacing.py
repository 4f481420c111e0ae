"""The window a stream's writer holds tokens for follows the tokens per second it carries."""

from __future__ import annotations

from ashao_common.pacing import Pace


def test_the_window_grows_with_the_rate_up_to_its_bound_and_closes_after_a_pause() -> None:
    pace = Pace(max_s=0.05, full_rate=1000.0, period_s=1.0)
    t = 0.0
    pace.count(0, t)
    assert pace.window_s == 0.0
    for _ in range(4):  # 100 tokens/s: a tenth of the full rate
        t += 1.0
        pace.count(100, t)
    assert 0.0 < pace.window_s < 0.05 / 2
    for _ in range(8):  # far beyond the full rate: the bound
        t += 1.0
        pace.count(100_000, t)
    assert pace.window_s == 0.05
    t += 60.0  # a minute of nothing: the rate is what it is now
    pace.count(1, t)
    assert pace.window_s < 0.001


def test_no_full_rate_means_no_window() -> None:
    pace = Pace(max_s=0.05, full_rate=0.0, period_s=0.0)
    pace.count(0, 0.0)
    pace.count(10**6, 1.0)
    assert pace.window_s == 0.0


def test_no_window_below_the_floor_rate() -> None:
    pace = Pace(max_s=0.05, full_rate=1000.0, floor_rate=200.0, period_s=1.0)
    t = 0.0
    pace.count(0, t)
    for _ in range(4):  # under the floor
        t += 1.0
        pace.count(150, t)
    assert pace.window_s == 0.0
    for _ in range(8):  # half way between the floor and the full rate
        t += 1.0
        pace.count(600, t)
    assert 0.02 < pace.window_s < 0.03
