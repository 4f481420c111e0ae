"""The books and the promises, read straight from a stopped core's SQLite file.

Plain SQL over the tables, nothing of the core's code: a bug in the core's own accounting cannot
hide itself here. ``check_books`` is the one independent check every fault case ends with:

- the ledger sums to zero over all accounts, and no account but ``mint`` is negative;
- escrow holds exactly the cost of the priced jobs not yet settled;
- every priced job was charged once, and each one that ended is settled exactly once, the whole cost
  paid out when it is ``done``, refunded when it failed, was cancelled or expired;
- nothing acknowledged is lost: every send that got 200 ``{jobId}`` has its job row, its client's
  stream ended with ``done`` or ``error`` (never silently), ``done`` for a job stored as done with the
  very tokens the client was sent, ``error`` for one stored as failed, cancelled or expired;
- no job nobody was told of (a send retried with its Idempotency-Key queues and charges once), beyond
  what the sends given up without an answer can explain.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import orjson

ENDED = frozenset({"done", "failed", "cancelled", "expired"})
PAYOUT_REASONS = ("payout_worker", "payout_treasury", "burn")
SPLICED = "the answer sent differs from the one stored"
"""Marks a problem where a client was sent (part of) another answer than the one the job kept."""


class Told(Protocol):
    """What a client was finally told about one acknowledged job."""

    job_id: str
    terminal: dict[str, object] | None
    """The ``done`` or ``error`` event's data, or None if its stream never ended."""
    tokens: list[str]
    """The token values of the answer it was sent, in order."""


@dataclass
class Books:
    """Figures of one store, for the report of a case."""

    jobs: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    priced: int = 0
    paid: int = 0
    refunded: int = 0
    escrow: int = 0
    minted: int = 0
    problems: list[str] = field(default_factory=list)


def balances(db: sqlite3.Connection) -> dict[str, int]:
    """Every account's balance: what it was credited minus what it was debited."""
    rows = db.execute(
        "SELECT account, SUM(delta) FROM (SELECT credit AS account, amount AS delta FROM ledger"
        " UNION ALL SELECT debit, -amount FROM ledger) GROUP BY account"
    ).fetchall()
    return {str(a): int(v) for a, v in rows}


def _moves(db: sqlite3.Connection) -> dict[str, list[tuple[str, str, int, str]]]:
    """Ledger rows by the job they name: (debit, credit, amount, reason)."""
    out: dict[str, list[tuple[str, str, int, str]]] = {}
    for debit, credit, amount, reason, ref in db.execute(
        "SELECT debit, credit, amount, reason, ref FROM ledger WHERE ref LIKE 'job_%'"
    ):
        out.setdefault(ref, []).append((debit, credit, amount, reason))
    return out


def read_books(db_path: Path) -> Books:
    """The figures of ``db_path``, with every broken rule of the books (not the promises) in ``problems``."""
    books = Books()
    problems = books.problems
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        bal = balances(db)
        jobs = db.execute("SELECT id, state, cost, payer FROM jobs").fetchall()
        settled: dict[str, list[str]] = {}
        for job_id, outcome in db.execute("SELECT job_id, outcome FROM settlements"):
            settled.setdefault(job_id, []).append(outcome)
        moves = _moves(db)
    total = sum(bal.values())
    if total != 0:
        problems.append(f"the ledger sums to {total}, not 0")
    for account, value in sorted(bal.items()):
        if account != "mint" and value < 0:
            problems.append(f"account {account} is negative ({value})")
    books.minted = -bal.get("mint", 0)
    books.escrow = bal.get("escrow", 0)
    books.jobs = len(jobs)
    unsettled_cost = 0
    known = set()
    for job_id, state, cost, payer in jobs:
        known.add(job_id)
        books.by_state[state] = books.by_state.get(state, 0) + 1
        outcomes = settled.get(job_id, [])
        if not cost:
            if outcomes or moves.get(job_id):
                problems.append(f"{job_id}: free, yet settled {outcomes} / moved {moves.get(job_id)}")
            continue
        books.priced += 1
        rows = moves.get(job_id, [])
        charged = [r for r in rows if r[1] == "escrow"]
        released = [r for r in rows if r[0] == "escrow"]
        if [(r[0], r[2], r[3]) for r in charged] != [(f"user:{payer}", cost, "charge")]:
            problems.append(f"{job_id}: charged {charged}, not once {cost} from user:{payer}")
        if state not in ENDED:
            unsettled_cost += cost
            if outcomes or released:
                problems.append(f"{job_id}: {state}, yet settled {outcomes} / released {released}")
            continue
        want = "paid" if state == "done" else "refunded"
        if outcomes != [want]:
            problems.append(f"{job_id}: {state}, settled {outcomes} (want exactly once {want!r})")
        if sum(r[2] for r in released) != cost:
            problems.append(f"{job_id}: {state}, escrow released {released}, not its cost {cost}")
        if want == "paid":
            books.paid += 1
            if any(r[3] not in PAYOUT_REASONS for r in released):
                problems.append(f"{job_id}: done, yet escrow went {released}")
        else:
            books.refunded += 1
            if [(r[1], r[3]) for r in released] != [(f"user:{payer}", "refund")]:
                problems.append(f"{job_id}: {state}, yet escrow went {released} (want a refund to its payer)")
    if books.escrow != unsettled_cost:
        problems.append(f"escrow holds {books.escrow}, the unsettled priced jobs cost {unsettled_cost}")
    for job_id in sorted(set(settled) - known):
        problems.append(f"settlement of an unknown job {job_id}")
    return books


def _stored_jobs(db_path: Path) -> dict[str, tuple[str, int, list[str]]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, state, tokens, output FROM jobs").fetchall()
    return {
        job_id: (state, tokens, orjson.loads(output) if output else [])
        for job_id, state, tokens, output in rows
    }


def _differ(seen: list[str], stored: list[str]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(seen, stored, strict=False)) if a != b), None)
    if first is None:
        return ""
    return f"; {SPLICED} from token {first + 1} on (sent {seen[first]!r}, stored {stored[first]!r})"


def promise_problems(db_path: Path, told: Mapping[str, Told], *, given_up: int = 0) -> list[str]:
    """Every acknowledged job (``told``, by job id) whose row is missing, whose stream ended silently,
    or whose stored outcome differs from what its client was told; and jobs nobody was told of, if
    there are more than the ``given_up`` sends that never got an answer could explain (a send retried
    with its Idempotency-Key must not queue, nor charge, twice)."""
    problems: list[str] = []
    stored = _stored_jobs(db_path)
    orphans = sorted(set(stored) - set(told))
    if len(orphans) > given_up:
        problems.append(
            f"{len(orphans)} job(s) no client was told of ({given_up} sends given up): {orphans[:5]}"
        )
    for job_id, t in told.items():
        row = stored.get(job_id)
        if row is None:
            problems.append(f"{job_id}: acknowledged, but no job row")
            continue
        state, count, output = row
        if t.terminal is None:
            problems.append(f"{job_id}: its stream never ended (stored as {state})")
        elif t.terminal.get("type") == "done":
            if state != "done":
                problems.append(f"{job_id}: the client was told done, the store says {state}")
            elif output != t.tokens or count != len(t.tokens) or t.terminal.get("tokens") != count:
                problems.append(
                    f"{job_id}: the client got {len(t.tokens)} tokens (done says {t.terminal.get('tokens')}),"
                    f" the store holds {count}{_differ(t.tokens, output)}"
                )
        elif t.terminal.get("type") == "error":
            if state not in ENDED - {"done"}:
                problems.append(f"{job_id}: the client was told error, the store says {state}")
        else:
            problems.append(f"{job_id}: ended with {t.terminal}")
    return problems


def check_books(db_path: Path, told: Mapping[str, Told], *, given_up: int = 0) -> Books:
    """Fail (listing every broken rule) unless the books balance and every acknowledged job kept its
    promise; the figures otherwise."""
    books = read_books(db_path)
    problems = books.problems + promise_problems(db_path, told, given_up=given_up)
    assert not problems, f"{len(problems)} broken rule(s):\n" + "\n".join(problems[:40])
    return books
