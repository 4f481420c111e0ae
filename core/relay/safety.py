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
from typing import TypedDict, Unpack

from core.relay.signing import canonical_json
from core.store import ConstraintError, Store, now_ms

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
    """Its fields but ``prev_hash`` and ``hash`` (and the height if it ``opens``): set when chained."""
    done: asyncio.Future[SafetyRecord]
    opens: bool
    """It opens the next state height (a request's first verdict)."""


def _row(r: SafetyRecord, seq: int) -> tuple[object, ...]:
    return (
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
        seq,
    )


class Verdict(TypedDict):
    """The fields of one verdict to record (``SafetyLedger.submit``'s arguments)."""

    height: int | None
    index: int
    stage: str
    verdict: str
    category: str
    reason: str
    text: str
    policy_hash: str


class SafetyLedger:
    """Appends and verifies verdict records.

    Records are chained by one writer per core: verdicts that arrive while a unit is being committed
    wait, and then all of them are chained onto the committed head and written as the next unit, so
    the chain grows in one order with any number of concurrent requests, at one commit per batch. A
    request's first verdict opens the next state height when it is chained. The head in memory moves
    only once the unit that carries it has committed; a failed unit fails its callers and leaves the
    head (and the chain) as they were.

    Several cores append to one chain: a unit chained onto a head another core has moved past breaks
    the store's uniqueness of the sequence number (or of the state height), is refused whole, and is
    chained again onto the head read back from the store, until it lands (bounded).
    """

    MAX_RECHAINS = 50
    """How many times one batch is chained again after losing to other cores before it fails."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.height = 0
        self._head = GENESIS
        self._seq = 0
        self._queue: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self.rechained = 0
        """Batches chained again because another core had moved the head."""

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

    async def record(self, **verdict: Unpack[Verdict]) -> SafetyRecord:
        """Append one verdict (``submit``'s fields); returns it once it is durable (StoreError if it
        could not be). ``height`` None opens a new state (a request's first verdict): the record carries
        its height."""
        return await asyncio.shield(self.submit(**verdict))

    def submit(
        self,
        *,
        height: int | None,
        index: int,
        stage: str,
        verdict: str,
        category: str,
        reason: str,
        text: str,
        policy_hash: str,
    ) -> asyncio.Future[SafetyRecord]:
        """As ``record``, without waiting: the future resolves once the verdict is durable (so a caller
        may do other work meanwhile, and must await it before telling anyone about the record)."""
        rec = SafetyRecord(
            height or 0, index, stage, verdict, category, reason, text_hash(text), policy_hash, now_ms(), ""
        )
        done: asyncio.Future[SafetyRecord] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(rec, done, opens=height is None))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="ashao-safety-ledger")
        return done

    def _chain(self, batch: list[_Pending]) -> tuple[list[SafetyRecord], str, int, int]:
        """``batch`` chained onto the head in memory: the records, and the new head, seq and height."""
        head, seq, height = self._head, self._seq, self.height
        records = []
        for p in batch:
            seq += 1
            rec = p.record
            if p.opens:
                height += 1
                rec = dataclasses.replace(rec, state_height=height)
            rec = dataclasses.replace(rec, prev_hash=head)
            rec = dataclasses.replace(rec, hash=rec.computed_hash())
            records.append(rec)
            head = rec.hash
        return records, head, seq, height

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                records, head, seq, height = await self._commit(batch)
            except Exception as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc)
                continue
            self._head, self._seq, self.height = head, seq, height
            for p, r in zip(batch, records, strict=True):
                if not p.done.done():
                    p.done.set_result(r)

    async def _commit(self, batch: list[_Pending]) -> tuple[list[SafetyRecord], str, int, int]:
        """Chain and write ``batch``, chaining it again onto the store's head while other cores win."""
        for attempt in range(self.MAX_RECHAINS + 1):
            records, head, seq, height = self._chain(batch)
            first_seq = seq - len(records) + 1
            try:
                await self._store.write(
                    [
                        (
                            f"INSERT INTO safety_ledger ({_COLUMNS}, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            _row(r, n),
                        )
                        for n, r in enumerate(records, first_seq)
                    ]
                )
                return records, head, seq, height
            except ConstraintError:
                if attempt == self.MAX_RECHAINS:
                    raise
                self.rechained += 1
                await self.load()  # another core appended: chain onto its head
        raise AssertionError("unreachable")

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
