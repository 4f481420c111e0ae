"""All economics of the network, in one place. Nothing else holds a number about money.

Amounts are integers in the smallest unit ("credits"); shares are basis points (1/10,000) so
that every split is exact in integers. The split rule: the worker gets ``floor(cost * worker_bps
/ 10000)``, the burn ``floor(cost * burn_bps / 10000)``, and the treasury the rest, so the three
always add up to the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

BPS = 10_000


@dataclass(frozen=True, slots=True)
class Tier:
    """A service level: what it is called, what it costs, how its price is split."""

    name: str
    model: str
    credit_cost: int
    """Credits charged per message (or per image for the image tier)."""
    max_tokens: int
    """Most tokens a job of this tier may produce."""
    priority: int
    """Higher is dispatched first."""
    worker_bps: int
    treasury_bps: int
    burn_bps: int
    chat: bool = True
    """False for the image tier."""

    def split(self, amount: int) -> tuple[int, int, int]:
        """(worker, treasury, burn) shares of ``amount``; they always sum to ``amount``."""
        worker = amount * self.worker_bps // BPS
        burn = amount * self.burn_bps // BPS
        return worker, amount - worker - burn, burn


def _validate(tiers: tuple[Tier, ...]) -> None:
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ValueError("tier names must be unique")
    for t in tiers:
        if t.worker_bps + t.treasury_bps + t.burn_bps != BPS:
            raise ValueError(f"tier {t.name}: shares must sum to {BPS} basis points")
        if min(t.credit_cost, t.worker_bps, t.treasury_bps, t.burn_bps, t.max_tokens) < 0:
            raise ValueError(f"tier {t.name}: no negative cost, share or limit")


TIERS_LIST: tuple[Tier, ...] = (
    Tier("free", "ashao-free", 0, 512, 0, 7000, 2000, 1000),
    Tier("basic", "ashao-basic", 1, 1024, 1, 7000, 2000, 1000),
    Tier("pro", "ashao-pro", 3, 2048, 2, 7000, 2000, 1000),
    Tier("ultra", "ashao-ultra", 10, 4096, 3, 7000, 2000, 1000),
    Tier("image", "ashao-image", 5, 0, 1, 7000, 2000, 1000, chat=False),
)
_validate(TIERS_LIST)

TIERS = MappingProxyType({t.name: t for t in TIERS_LIST})
CHAT_TIERS = tuple(t.name for t in TIERS_LIST if t.chat)
# Dispatch order: highest priority first; ties keep the declaration order.
TIERS_BY_PRIORITY = tuple(t.name for t in sorted(TIERS_LIST, key=lambda t: -t.priority))

# -- accounts, treasury and staking ----------------------------------------------------------

SIGNUP_GRANT = 100
"""Credits minted to a wallet at its first sign-in."""

STAKING_REWARD_BPS = 10
"""At each treasury snapshot, this share (basis points) of the treasury balance is paid to stakers,
pro rata to their stake (each gets the floor of its share; the remainder stays in the treasury)."""

SNAPSHOT_INTERVAL_S = 60.0
"""How often a treasury snapshot is taken (and staking rewards paid)."""

SNAPSHOTS_KEPT = 10_080
"""How many snapshots are kept for charts (a week at one a minute); also the largest page served."""

SNAPSHOT_PAGE_DEFAULT = 500
"""How many snapshots a treasury page holds when the caller does not say."""


def price(*, treasury_balance: int, circulating_supply: int) -> float:
    """The $ASHAO price rule, in credits per unit: one credit, plus the treasury's backing per
    circulating unit. It rises as the treasury accumulates and as burning shrinks supply."""
    return 1.0 + treasury_balance / max(1, circulating_supply)


# -- the relay's posted price ----------------------------------------------------------------
# price per message = ceil(variable_cost + overhead + improvement + reserve + buffer), at least 1:
#   variable_cost = measured mean output tokens per relay message x RELAY_CREDITS_PER_1K_TOKENS / 1000
#   overhead      = OPERATING_COST_PER_WEEK / measured relay messages per week (trailing hour, scaled),
#                   capped at OVERHEAD_CAP_CREDITS per message
#   improvement, reserve, buffer = their shares (basis points) of variable_cost + overhead

RELAY_CREDITS_PER_1K_TOKENS = 2.0
OPERATING_COST_PER_WEEK = 5_000
OVERHEAD_CAP_CREDITS = 5.0
IMPROVEMENT_BPS = 1_000
RESERVE_BPS = 1_500
BUFFER_BPS = 500

# -- sustainability ------------------------------------------------------------------------------
OPERATING_FLOAT_TARGET = 4 * OPERATING_COST_PER_WEEK
"""The treasury balance that covers four weeks of operation."""
RESERVE_FLOOR = OPERATING_COST_PER_WEEK
"""Below this the treasury is in its reserve."""
