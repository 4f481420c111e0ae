"""Vitals, sensorium, health and sustainability: computed from live measurements, never constants.

Each of the eight vital domains has a written definition (what is read, how it is banded); the
methodology hash of a domain is the SHA-256 of the canonical JSON of that definition, so it changes
exactly when the definition does. A domain without enough observations yet is ``not_yet_sealed``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import economics
from core.identity.ratelimit import Limiter
from core.jobs.stats import JobsSnapshot
from core.money.ledger import MINT, Ledger
from core.money.treasury import Treasury
from core.relay.cascade import Cascade
from core.relay.moderation import Moderator
from core.relay.safety import SafetyLedger
from core.relay.signing import canonical_json
from core.store import Store

HEALTHY, WARNING, CRITICAL, UNSEALED = "healthy", "warning", "critical", "not_yet_sealed"

DEFINITIONS: dict[str, dict[str, Any]] = {
    "dispatch": {
        "reads": "seconds the oldest queued job has waited; queue depth",
        "bands": {"healthy": "wait < 5 s", "warning": "wait < 30 s", "critical": "wait >= 30 s"},
        "sealed": "after the first send",
    },
    "workforce": {
        "reads": "live stream workers; their free slots",
        "bands": {
            "healthy": ">= 1 worker with a free slot",
            "warning": "workers, no free slot",
            "critical": "no live worker",
        },
        "sealed": "always",
    },
    "throughput": {
        "reads": "tokens/s over the last 5 s; jobs streaming",
        "bands": {
            "healthy": "tokens flow, or nothing is streaming",
            "critical": "jobs streaming, 0 tokens/s",
        },
        "sealed": "after the first completed job",
    },
    "reliability": {
        "reads": "share of the last <= 500 finished jobs that failed or expired",
        "bands": {"healthy": "< 2 %", "warning": "< 10 %", "critical": ">= 10 %"},
        "sealed": "after 20 finished jobs",
    },
    "moderation": {
        "reads": "share of moderation checks that refused",
        "bands": {"healthy": "< 20 %", "warning": "< 50 %", "critical": ">= 50 %"},
        "sealed": "after 20 checks",
    },
    "providers": {
        "reads": "provider breakers and health; the floor",
        "bands": {
            "healthy": "every provider healthy",
            "warning": "some unhealthy, floor healthy",
            "critical": "floor (or every provider) unhealthy",
        },
        "sealed": "when a provider is configured",
    },
    "treasury": {
        "reads": "runway weeks = treasury balance / OPERATING_COST_PER_WEEK",
        "bands": {"healthy": ">= 12 weeks", "warning": ">= 4 weeks", "critical": "< 4 weeks"},
        "sealed": "after the first credit is minted",
    },
    "integrity": {
        "reads": "credit books balance to zero with no negative account; safety chain verifies",
        "bands": {"healthy": "both hold", "critical": "either fails"},
        "sealed": "always",
    },
}

METHODOLOGY = {name: hashlib.sha256(canonical_json(d)).hexdigest() for name, d in DEFINITIONS.items()}


@dataclass(frozen=True, slots=True)
class Vital:
    """One domain's band and reading."""

    band: str
    reading: dict[str, Any]


class LoopLag:
    """Measures event-loop lag: how late a timer of ``PERIOD_S`` fires (run ``tick`` on that period)."""

    PERIOD_S = 0.1

    def __init__(self) -> None:
        self.lag_ms = 0.0
        self._last = 0.0

    async def tick(self) -> None:
        """One measurement: the time since the previous tick, less the period."""
        now = time.monotonic()
        if self._last:
            self.lag_ms = max(0.0, (now - self._last - self.PERIOD_S) * 1000)
        self._last = now


def _rss_mib() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Vitals:
    """Reads the running system."""

    def __init__(
        self,
        *,
        jobs: Callable[[], JobsSnapshot],
        ledger: Ledger,
        treasury: Treasury,
        cascade: Cascade,
        moderator: Moderator,
        limiter: Limiter,
        safety: SafetyLedger,
        store: Store,
        lag: LoopLag,
        started: float,
        serving: Callable[[], bool],
    ) -> None:
        self._jobs = jobs
        self._ledger = ledger
        self._treasury = treasury
        self._cascade = cascade
        self._moderator = moderator
        self._limiter = limiter
        self._safety = safety
        self._store = store
        self._lag = lag
        self._started = started
        self._serving = serving
        self._books: tuple[bool, int] = (True, 0)
        self._books_at = 0.0
        self._chain: tuple[bool, int, str] = (True, 0, "")

        self._chain_at = 0.0

    async def chain(self) -> tuple[bool, int, str]:
        """The safety chain's verification, at most a few seconds old."""
        if time.monotonic() - self._chain_at > 5.0:
            self._chain = await self._safety.verify()
            self._chain_at = time.monotonic()
        return self._chain

    async def books(self) -> tuple[bool, int]:
        """(balanced with no negative account, total minted), at most a few seconds old."""
        if time.monotonic() - self._books_at > 5.0:
            balances = await self._ledger.balances.snapshot()
            ok = sum(balances.values()) == 0 and all(v >= 0 for k, v in balances.items() if k != MINT)
            self._books = (ok, -balances.get(MINT, 0))
            self._books_at = time.monotonic()
        return self._books

    async def vitals(self) -> dict[str, Vital]:
        """The eight domains."""
        j = self._jobs()
        wait = j.oldest_wait_s
        band = UNSEALED if not j.last_send_at else HEALTHY if wait < 5 else WARNING if wait < 30 else CRITICAL
        out = {"dispatch": Vital(band, {"oldest_wait_s": round(wait, 3), "queue_depth": j.queue_depth})}
        free = j.slots - j.busy_slots
        band = CRITICAL if j.live_workers == 0 else HEALTHY if free > 0 else WARNING
        out["workforce"] = Vital(
            band, {"live_workers": j.live_workers, "slots": j.slots, "busy_slots": j.busy_slots}
        )
        tps = j.tokens_per_sec
        streaming = j.jobs_streaming
        band = UNSEALED if j.jobs_completed == 0 else CRITICAL if streaming and tps == 0 else HEALTHY
        out["throughput"] = Vital(band, {"tokens_per_sec": round(tps, 2), "jobs_streaming": streaming})
        sample = j.recent_outcomes
        rate = j.recent_failures / sample if sample else 0.0
        band = UNSEALED if sample < 20 else HEALTHY if rate < 0.02 else WARNING if rate < 0.10 else CRITICAL
        out["reliability"] = Vital(band, {"failure_rate": round(rate, 4), "sample": sample})
        m = self._moderator
        rate = m.refusals / m.checks if m.checks else 0.0
        band = UNSEALED if m.checks < 20 else HEALTHY if rate < 0.2 else WARNING if rate < 0.5 else CRITICAL
        out["moderation"] = Vital(
            band, {"refusal_rate": round(rate, 4), "checks": m.checks, "policy_hash": m.policy_hash}
        )
        statuses = self._cascade.status()
        floor_ok = (
            self._cascade.floor_healthy() if self._cascade.floor() else any(s.healthy for s in statuses)
        )
        if not statuses:
            band = UNSEALED
        elif all(s.healthy for s in statuses):
            band = HEALTHY
        else:
            band = WARNING if floor_ok else CRITICAL
        out["providers"] = Vital(
            band,
            {
                "providers": [
                    {"name": s.name, "breaker": s.breaker, "healthy": s.healthy, "floor": s.is_floor}
                    for s in statuses
                ]
            },
        )
        snap = await self._treasury.current()
        runway = snap.balance / economics.OPERATING_COST_PER_WEEK
        _, minted = await self.books()
        band = UNSEALED if minted == 0 else HEALTHY if runway >= 12 else WARNING if runway >= 4 else CRITICAL
        out["treasury"] = Vital(band, {"runway_weeks": round(runway, 3), "balance": snap.balance})
        books_ok, _ = await self.books()
        chain_ok, checked, first_bad = await self.chain()
        out["integrity"] = Vital(
            HEALTHY if books_ok and chain_ok else CRITICAL,
            {
                "books_balanced": books_ok,
                "safety_chain_intact": chain_ok,
                "safety_records_checked": checked,
                "first_bad_record": first_bad,
            },
        )
        return out

    async def vitals_document(self) -> dict[str, Any]:
        """``/vitals``."""
        v = await self.vitals()
        return {
            "domains": {
                name: {"band": x.band, "reading": x.reading, "methodology_hash": METHODOLOGY[name]}
                for name, x in v.items()
            },
            "definitions": DEFINITIONS,
        }

    async def sensorium(self) -> dict[str, Any]:
        """``/sensorium``: what the system perceives of itself."""
        v = await self.vitals()
        sealed = [x.band for x in v.values() if x.band != UNSEALED]
        weight = {HEALTHY: 0.0, WARNING: 0.5, CRITICAL: 1.0}
        distress = sum(weight[b] for b in sealed) / len(sealed) if sealed else 0.0
        now = time.monotonic()
        j = self._jobs()
        return {
            "interoception": {
                "event_loop_lag_ms": round(self._lag.lag_ms, 3),
                "rss_mib": round(_rss_mib(), 1),
                "store_group_commits": self._store.batches,
            },
            "chronoception": {
                "uptime_s": round(now - self._started, 1),
                "since_last_send_s": round(now - j.last_send_at, 1) if j.last_send_at else None,
                "oldest_queued_wait_s": round(j.oldest_wait_s, 3),
            },
            "proprioception": {
                "live_workers": j.live_workers,
                "slots": j.slots,
                "busy_slots": j.busy_slots,
                "providers_healthy": sum(1 for s in self._cascade.status() if s.healthy),
            },
            "distress_score": round(distress, 3),
        }

    async def health(self) -> dict[str, Any]:
        """``/health``."""
        stalled = self._jobs().stalled_queued
        return {
            "ok": True,
            "relay": self._serving(),
            "arbiter": True,
            "floor": self._cascade.floor_healthy() if self._cascade.floor() else None,
            "watchdog": {
                "event_loop_lag_ms": round(self._lag.lag_ms, 3),
                "stalled_jobs": stalled,
                "rate_limited": self._limiter.refused,
            },
        }

    async def sustainability(self) -> dict[str, Any]:
        """``/sustainability``: treasury readiness."""
        snap = await self._treasury.current()
        week_ago = int(time.time() * 1000) - 7 * 86400 * 1000
        row = await self._store.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE credit = 'treasury' AND created_at > ?",
            (week_ago,),
        )
        inflow = int(row[0]) if row else 0
        cost = economics.OPERATING_COST_PER_WEEK
        return {
            "runway_weeks": round(snap.balance / cost, 3),
            "operating_float_fraction": round(snap.balance / economics.OPERATING_FLOAT_TARGET, 4),
            "distance_to_reserve_floor": snap.balance - economics.RESERVE_FLOOR,
            "recurring_burn_ratio": round(inflow / cost, 4),
            "treasury_inflow_7d": inflow,
            "operating_cost_per_week": cost,
        }
