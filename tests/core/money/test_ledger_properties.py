"""Ledger invariants under any sequence of sends, completions, failures, grants, stakes and unstakes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.economics import TIERS
from core.errors import AshaoError
from core.money.balances import GUARDED, MemoryBalances
from core.money.billing import Billing
from core.money.ledger import ESCROW, MINT, Ledger, Move, stake_account, user_account
from core.store.sqlite import migrate

USERS = ["usr_a0000000", "usr_b0000000", "usr_c0000000"]
WORKERS = ["wrk_x0000000", "wrk_y0000000"]
PRICED = [t.name for t in TIERS.values() if t.credit_cost > 0 and t.chat]


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger through billing as the coordinator does, writing every row to SQLite."""

    def __init__(self) -> None:
        super().__init__()
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        migrate(self.db)
        self.projection = MemoryBalances()
        self.ledger = Ledger(store=None, balances=self.projection)  # type: ignore[arg-type]  # rows go to self.db directly
        self.billing = Billing(self.ledger)
        self.open_jobs: dict[str, tuple[str, str, int]] = {}
        self.outcomes: dict[str, str] = {}
        self.minted = 0
        self.n = 0

    def write(self, rows: list[Any]) -> None:
        self.db.execute("BEGIN")
        for sql, params in rows:
            self.db.execute(sql, params)
        self.db.execute("COMMIT")

    @rule(user=st.sampled_from(USERS), amount=st.integers(min_value=1, max_value=50))
    def grant(self, user: str, amount: int) -> None:
        self.write(self.ledger.book([Move(MINT, user_account(user), amount, "grant")]).statements)
        self.minted += amount

    @rule(user=st.sampled_from(USERS), tier=st.sampled_from(PRICED))
    def send(self, user: str, tier: str) -> None:
        self.n += 1
        job = f"job_{self.n:08d}"
        before = self.projection.projected(user_account(user))
        try:
            booking = self.billing.charge(job_id=job, tier=tier, payer=user)
        except AshaoError:
            assert before < TIERS[tier].credit_cost  # refused only when short
            assert self.projection.projected(user_account(user)) == before
            return
        self.write(booking.statements)
        self.open_jobs[job] = (user, tier, TIERS[tier].credit_cost)

    @precondition(lambda self: self.open_jobs)
    @rule(worker=st.sampled_from(WORKERS), data=st.data())
    def complete(self, worker: str, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.open_jobs)))
        _, tier, cost = self.open_jobs.pop(job)
        self.write(self.billing.payout(job_id=job, tier=tier, cost=cost, worker_id=worker).statements)
        self.outcomes[job] = "paid"

    @precondition(lambda self: self.open_jobs)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.open_jobs)))
        user, _, cost = self.open_jobs.pop(job)
        self.write(self.billing.refund(job_id=job, cost=cost, payer=user).statements)
        self.outcomes[job] = "refunded"

    @precondition(lambda self: self.outcomes)
    @rule(data=st.data())
    def settle_twice_is_refused(self, data: st.DataObject) -> None:
        job = data.draw(st.sampled_from(sorted(self.outcomes)))
        try:
            self.billing.refund(job_id=job, cost=1, payer=USERS[0])
        except AshaoError:
            return
        raise AssertionError("a settled job was settled again")

    @rule(user=st.sampled_from(USERS), amount=st.integers(min_value=-5, max_value=60), stake=st.booleans())
    def stake_or_unstake(self, user: str, amount: int, stake: bool) -> None:
        src, dst = (
            (user_account(user), stake_account(user)) if stake else (stake_account(user), user_account(user))
        )
        before = self.projection.projected(src)
        try:
            rows = self.ledger.book([Move(src, dst, amount, "stake" if stake else "unstake")]).statements
        except AshaoError:
            assert amount <= 0 or before < amount
            return
        assert 0 < amount <= before
        self.write(rows)

    @invariant()
    def books_balance(self) -> None:
        balances = self.projection.projection()
        assert sum(balances.values()) == 0
        assert sum(v for k, v in balances.items() if k != MINT) == self.minted
        assert all(v >= 0 for k, v in balances.items() if k != MINT)
        assert self.projection.projected(ESCROW) == sum(cost for _, _, cost in self.open_jobs.values())

    @invariant()
    def store_agrees_with_projection(self) -> None:
        rows = self.db.execute(
            "SELECT account, SUM(delta) FROM (SELECT credit AS account, amount AS delta FROM ledger"
            " UNION ALL SELECT debit, -amount FROM ledger) GROUP BY account"
        ).fetchall()
        assert {a: t for a, t in rows if t} == self.projection.projection()
        settled = dict(self.db.execute("SELECT job_id, outcome FROM settlements").fetchall())
        assert settled == self.outcomes
        guarded = {a: b for a, b in self.db.execute("SELECT account, balance FROM account_balances") if b}
        assert guarded == {a: b for a, b in self.projection.projection().items() if a.startswith(GUARDED)}


LedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestLedger = LedgerMachine.TestCase


def test_schema_rejects_a_second_settlement(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    migrate(db)
    db.execute("INSERT INTO settlements VALUES ('job_1', 'paid', 0)")
    try:
        db.execute("INSERT INTO settlements VALUES ('job_1', 'refunded', 0)")
    except sqlite3.IntegrityError:
        return
    raise AssertionError("the primary key must refuse a second settlement")
