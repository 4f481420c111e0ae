"""Worker identity: registration, the token a worker authenticates with, and what it is known by.

Tokens are random, shown once, and stored only as SHA-256 hashes. The registry is loaded from the
store at start-up and changes in memory only after the write it depends on has committed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from core.economics import CHAT_TIERS, TIERS
from core.errors import InvalidArgumentError, UnauthenticatedError
from core.ids import new_id
from core.store import Store, now_ms
from core.workers.links import Connection

MAX_WORKER_NAME = 64
MAX_SLOTS = 1024
"""Most jobs one worker may announce it runs at once."""


def hash_token(token: str) -> str:
    """How worker tokens are stored: never in clear."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class WorkerInfo:
    """A registered worker."""

    id: str
    name: str
    tiers: frozenset[str]
    slots: int
    last_seen: float = 0.0
    """Monotonic time of its last message (stream) or call (pull path)."""
    tokens_per_sec: float = 0.0
    connection: Connection | None = None
    """Set while it holds a Connect stream."""
    pulled: set[str] = field(default_factory=set)
    """Jobs it took through the pull path."""


def check_tiers(tiers: list[str]) -> frozenset[str]:
    """The tiers a worker serves: those named (each must exist), or every chat tier if none."""
    if not tiers:
        return frozenset(CHAT_TIERS)
    for t in tiers:
        if t not in TIERS:
            raise InvalidArgumentError(f"tiers: unknown tier {t!r}", field="tiers")
    return frozenset(tiers)


def check_slots(slots: int) -> int:
    """A worker's slot count (0 means 1), within bounds."""
    slots = slots or 1
    if not 1 <= slots <= MAX_SLOTS:
        raise InvalidArgumentError(f"slots: must be between 1 and {MAX_SLOTS}", field="slots")
    return slots


class WorkerRegistry:
    """Every registered worker, by id and by token hash."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._workers: dict[str, WorkerInfo] = {}
        self._by_token: dict[str, str] = {}

    async def load(self) -> None:
        """Read every worker from the store."""
        for wid, name, token_hash, tiers, slots in await self._store.fetchall(
            "SELECT id, name, token_hash, tiers, slots FROM workers"
        ):
            self._workers[wid] = WorkerInfo(wid, name, frozenset(orjson.loads(tiers)), slots)
            self._by_token[token_hash] = wid

    def __iter__(self) -> Iterator[WorkerInfo]:
        return iter(self._workers.values())

    def get(self, worker_id: str) -> WorkerInfo | None:
        """The worker with ``worker_id``, if registered."""
        return self._workers.get(worker_id)

    async def register(self, *, name: str, tiers: list[str], slots: int) -> tuple[WorkerInfo, str]:
        """Create a worker; returns it and its token (shown once)."""
        if len(name) > MAX_WORKER_NAME:
            raise InvalidArgumentError(f"name: longer than {MAX_WORKER_NAME} characters", field="name")
        chosen = check_tiers(tiers)
        slots = check_slots(slots)
        worker_id = new_id("wrk")
        token = "wtok_" + secrets.token_urlsafe(32)
        token_hash = hash_token(token)
        now = now_ms()
        await self._store.write(
            [
                (
                    "INSERT INTO workers (id, name, token_hash, tiers, slots, created_at, last_seen)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (
                        worker_id,
                        name or worker_id,
                        token_hash,
                        orjson.dumps(sorted(chosen)).decode(),
                        slots,
                        now,
                        now,
                    ),
                ),
            ]
        )
        info = WorkerInfo(worker_id, name or worker_id, chosen, slots)
        self._workers[worker_id] = info
        self._by_token[token_hash] = worker_id
        return info, token

    def authenticate(self, token: str) -> WorkerInfo:
        """The worker holding ``token`` (now seen alive); UNAUTHENTICATED otherwise."""
        if not token:
            raise UnauthenticatedError("worker token required (Authorization: Bearer <workerToken>)")
        worker_id = self._by_token.get(hash_token(token))
        if worker_id is None:
            raise UnauthenticatedError("unknown worker token")
        info = self._workers[worker_id]
        info.last_seen = time.monotonic()
        return info

    def active(self, now: float, recent_s: float) -> int:
        """Workers holding a stream, or seen on the pull path within ``recent_s`` seconds."""
        return sum(
            1
            for w in self._workers.values()
            if w.connection is not None or (w.last_seen and now - w.last_seen < recent_s)
        )
