"""The relay's posted price, checked against worked examples computed by hand from the rule written
in core/economics.py (2 credits per 1,000 output tokens; 5,000 credits of operating cost a week,
at most 5 credits of it per message; improvement 10 %, reserve 15 %, buffer 5 % on top; rounded up)."""

from __future__ import annotations

import pytest

from core.money.pricing import PriceBoard


def test_unsealed_price_uses_the_default_answer_length_and_the_overhead_cap() -> None:
    board = PriceBoard(default_output_tokens=512)
    p = board.current(now=1000.0)
    # variable 512 x 2 / 1000 = 1.024; overhead capped at 5; base 6.024; x 1.30 = 7.8312 → 8
    assert p.sealed is False
    assert p.variable_cost == pytest.approx(1.024)
    assert p.overhead == pytest.approx(5.0)
    assert (p.improvement, p.reserve, p.buffer) == pytest.approx((0.6024, 0.9036, 0.3012))
    assert p.price == 8


def test_measured_messages_set_the_price() -> None:
    board = PriceBoard(default_output_tokens=512)
    for i in range(10):
        board.observe(1000, now=1000.0 + i)
    p = board.current(now=1010.0)
    # variable 1000 x 2 / 1000 = 2; 10 messages in the last hour = 1,680 a week;
    # overhead 5000 / 1680 = 2.97619…; base 4.97619…; x 1.30 = 6.4690… → 7
    assert p.sealed is True
    assert p.messages_per_week == pytest.approx(1680.0)
    assert p.overhead == pytest.approx(2.976190, rel=1e-5)
    assert p.price == 7


def test_messages_older_than_an_hour_no_longer_count() -> None:
    board = PriceBoard(default_output_tokens=512)
    for i in range(10):
        board.observe(1000, now=1000.0 + i)
    p = board.current(now=1000.0 + 3600 + 100)
    # the answer length is still measured (1000 tokens), but no message in the last hour: overhead
    # back at its cap; base 2 + 5 = 7; x 1.30 = 9.1 → 10
    assert p.messages_per_week == 0 and p.price == 10
