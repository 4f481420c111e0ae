"""The safety ledger: append-only, hash-chained records of every moderation verdict.

Each relay request advances the state height by one; its verdicts are indexed within it (0 for
ingress, 1 for egress), so a ``correlation_id`` is ``"<state_height>:<index>"``. Every record holds
the SHA-256 of the exact text judged, the hash of the previous record, and its own hash: the
SHA-256 of the canonical JSON of all its other fields. Changing any stored field, or removing or
reordering a record, breaks the chain, which ``verify()`` walks end to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from dataclasses import asdict, dataclass

from core.relay.signing import canonical_json
from core.store import Store, now_ms

GENESIS = "0" * 64
MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class SafetyRecord:
    """One verdict."""

    state_height: int
    index: int
    stage: str
    """"ingress" or "egress"."""
    verdict: str
    """"allow" or "refuse"."""
    category: str
    reason: str
    text_sha256: str
    policy_hash: str
    """SHA-256 of the policy that judged it."""
    created_at_ms: int
    prev_hash: str
    hash: str = ""

    @property
    def correlation_id(self) -> str:
        """``"<state_height>:<index>"``."""
        return f"{self.state_height}:{self.index}"

    def body(self) -> dict[str, object]:
        """Every field but ``hash``."""
        d = asdict(self)
        d.pop("hash")
        return d

    def computed_hash(self) -> str:
        """The hash this record must carry."""
        return hashlib.sha256(canonical_json(self.body())).hexdigest()


def text_hash(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


_COLUMNS = "state_height, idx, stage, verdict, category, reason, text_sha256, policy_hash, created_at, prev_hash, hash"


@dataclass(slots=True)
class _Pending:
    record: SafetyRecord
    """Its fields but ``prev_hash`` and ``hash``, which are set when it is chained."""
    done: asyncio.Future[SafetyRecord]


class SafetyLedger:
    """Appends and verifies verdict records.

    Records are chained by one writer: verdicts that arrive while a unit is being committed wait, and
    then all of them are chained onto the committed head and written as the next unit, so the chain
    grows in one order with any number of concurrent requests, at one commit per batch. The head in
    memory moves only once the unit that carries it has committed; a failed unit fails its callers
    and leaves the head (and the chain) as they were.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.height = 0
        self._head = GENESIS
        self._seq = 0
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Find the chain head and the highest state height."""
        row = await self._store.fetchone("SELECT seq, hash FROM safety_ledger ORDER BY seq DESC LIMIT 1")
        if row is not None:
            self._seq, self._head = int(row[0]), str(row[1])
        row = await self._store.fetchone("SELECT MAX(state_height) FROM safety_ledger")
        if row is not None and row[0] is not None:
            self.height = int(row[0])

    @property
    def head(self) -> str:
        """The hash of the last committed record (``GENESIS`` for an empty chain)."""
        return self._head

    def next_height(self) -> int:
        """Open a new state for one request."""
        self.height += 1
        return self.height

    async def record(
        self,
        *,
        height: int,
        index: int,
        stage: str,
        verdict: str,
        category: str,
        reason: str,
        text: str,
        policy_hash: str,
    ) -> SafetyRecord:
        """Append one verdict; returns it once it is durable (StoreError if it could not be)."""
        rec = SafetyRecord(
            height, index, stage, verdict, category, reason, text_hash(text), policy_hash, now_ms(), ""
        )
        done: asyncio.Future[SafetyRecord] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rec, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="ashao-safety-ledger")
        return await asyncio.shield(done)

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            head, seq = self._head, self._seq
            chained: list[tuple[_Pending, SafetyRecord, int]] = []
            for p in batch:
                seq += 1
                rec = dataclasses.replace(p.record, prev_hash=head)
                rec = dataclasses.replace(rec, hash=rec.computed_hash())
                chained.append((p, rec, seq))
                head = rec.hash
            rows = [
                (
                    f"INSERT INTO safety_ledger ({_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        r.state_height,
                        r.index,
                        r.stage,
                        r.verdict,
                        r.category,
                        r.reason,
                        r.text_sha256,
                        r.policy_hash,
                        r.created_at_ms,
                        r.prev_hash,
                        r.hash,
                        n,
                    ),
                )
                for _, r, n in chained
            ]
            try:
                await self._store.write(rows)
            except Exception as exc:
                for p, _, _ in chained:
                    if not p.done.done():
                        p.done.set_exception(exc)
                continue
            self._head, self._seq = head, seq
            for p, r, _ in chained:
                if not p.done.done():
                    p.done.set_result(r)

    async def get(self, correlation_id: str) -> SafetyRecord | None:
        """The record behind a correlation id."""
        height, sep, index = correlation_id.partition(":")
        if not sep or not _DIGITS.fullmatch(height) or not _DIGITS.fullmatch(index):
            return None
        h, i = int(height), int(index)
        if h > MAX_INT64 or i > MAX_INT64:
            return None
        row = await self._store.fetchone(
            f"SELECT {_COLUMNS} FROM safety_ledger WHERE state_height = ? AND idx = ?", (h, i)
        )
        return SafetyRecord(*row) if row else None

    async def verify(self) -> tuple[bool, int, str]:
        """Walk the chain: (intact, records checked, correlation id of the first bad record or '')."""
        rows = await self._store.fetchall(f"SELECT {_COLUMNS} FROM safety_ledger ORDER BY seq")
        prev = GENESIS
        for n, row in enumerate(rows):
            rec = SafetyRecord(*row)
            if rec.prev_hash != prev or rec.hash != rec.computed_hash():
                return False, n, rec.correlation_id
            prev = rec.hash
        return True, len(rows), ""
