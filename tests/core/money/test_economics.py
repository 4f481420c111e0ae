"""Economics: every split adds up; a bad table is refused."""

from __future__ import annotations

import pytest

from core.economics import TIERS, TIERS_BY_PRIORITY, Tier, _validate


def test_economics_are_consistent() -> None:
    assert TIERS_BY_PRIORITY[0] == "ultra" and TIERS_BY_PRIORITY[-1] == "free"
    for tier in TIERS.values():
        for amount in (0, 1, 3, 10, 999):
            assert sum(tier.split(amount)) == amount
    with pytest.raises(ValueError):
        _validate((Tier("x", "m", 1, 1, 0, 5000, 5000, 1),))
    with pytest.raises(ValueError):
        _validate((Tier("x", "m", -1, 1, 0, 5000, 5000, 0),))
