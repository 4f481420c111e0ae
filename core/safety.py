"""The safety ledger: append-only, hash-chained records of every moderation verdict.

Each relay request advances the state height by one; its verdicts are indexed within it (0 for
ingress, 1 for egress), so a ``correlation_id`` is ``"<state_height>:<index>"``. Every record holds
the SHA-256 of the exact text judged, the hash of the previous record, and its own hash: the
SHA-256 of the canonical JSON of all its other fields. Changing any stored field, or removing or
reordering a record, breaks the chain, which ``verify()`` walks end to end.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from core.signing import canonical_json
from core.store import Store, now_ms

GENESIS = "0" * 64


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


class SafetyLedger:
    """Appends and verifies verdict records; the chain head is kept in memory."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.height = 0
        self._head = GENESIS

    async def load(self) -> None:
        """Find the chain head."""
        row = await self._store.fetchone(
            "SELECT state_height, hash FROM safety_ledger ORDER BY state_height DESC, idx DESC LIMIT 1"
        )
        if row is not None:
            self.height, self._head = int(row[0]), str(row[1])

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
        """Append one verdict (durable when this returns)."""
        rec = SafetyRecord(
            height,
            index,
            stage,
            verdict,
            category,
            reason,
            text_hash(text),
            policy_hash,
            now_ms(),
            self._head,
        )
        rec = SafetyRecord(**{**rec.body(), "hash": rec.computed_hash()})  # type: ignore[arg-type]
        self._head = rec.hash  # chained in memory at once, so concurrent requests chain in order
        await self._store.write(
            [
                (
                    f"INSERT INTO safety_ledger ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        rec.state_height,
                        rec.index,
                        rec.stage,
                        rec.verdict,
                        rec.category,
                        rec.reason,
                        rec.text_sha256,
                        rec.policy_hash,
                        rec.created_at_ms,
                        rec.prev_hash,
                        rec.hash,
                    ),
                )
            ]
        )
        return rec

    async def get(self, correlation_id: str) -> SafetyRecord | None:
        """The record behind a correlation id."""
        height, sep, index = correlation_id.partition(":")
        if not sep or not height.isdigit() or not index.isdigit():
            return None
        row = await self._store.fetchone(
            f"SELECT {_COLUMNS} FROM safety_ledger WHERE state_height = ? AND idx = ?",
            (int(height), int(index)),
        )
        return SafetyRecord(*row) if row else None

    async def verify(self) -> tuple[bool, int, str]:
        """Walk the chain: (intact, records checked, correlation id of the first bad record or '')."""
        rows = await self._store.fetchall(f"SELECT {_COLUMNS} FROM safety_ledger ORDER BY rowid")
        prev = GENESIS
        for n, row in enumerate(rows):
            rec = SafetyRecord(*row)
            if rec.prev_hash != prev or rec.hash != rec.computed_hash():
                return False, n, rec.correlation_id
            prev = rec.hash
        return True, len(rows), ""
