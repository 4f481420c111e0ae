"""Worker identity: registration (admitted by the join policy), the token a worker authenticates
with, revocation, and what the core knows of each worker.

Tokens are random, shown once, and stored only as SHA-256 hashes. The registry is loaded from the
store at start-up and changes in memory only after the write it depends on has committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from core.economics import CHAT_TIERS, TIERS
from core.errors import InvalidArgumentError, NotFoundError, RateLimitedError, UnauthenticatedError
from core.identity.ratelimit import TokenBuckets
from core.ids import new_id
from core.store import Store, now_ms
from core.workers.joining import JoinPolicy
from core.workers.links import Connection
from core.workers.standing import PROBATION_SLOTS, Standing

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
    last_polled: float = 0.0
    """Monotonic time of its last call on the pull path (claim, publish, complete, fail, heartbeat)."""
    tokens_per_sec: float = 0.0
    """What it last reported (the core measures its own figure in ``standing``)."""
    owner_address: str = ""
    """The wallet its earnings belong to, if it registered with one."""
    connection: Connection | None = None
    """Set while it holds a Connect stream."""
    pulled: set[str] = field(default_factory=set)
    """Jobs it took through the pull path."""
    standing: Standing = field(default_factory=Standing)
    """What it delivered since the core started, and how many jobs it is trusted with."""

    def sync_connection(self) -> None:
        """Carry its standing to its connection (what placement reads)."""
        if self.connection is not None:
            self.connection.trusted = self.standing.trusted(self.connection.slots)
            self.connection.pace = self.standing.pace


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

    def __init__(
        self,
        store: Store,
        *,
        joining: JoinPolicy,
        registrations: TokenBuckets,
        probation_slots: int = PROBATION_SLOTS,
        shared: bool = False,
    ) -> None:
        """``shared``: several cores register workers into one store; a token this core does not know
        is looked up there (a worker may register with one core and connect to another)."""
        self._store = store
        self._shared = shared
        self._probation = probation_slots
        self.joining = joining
        self._registrations = registrations
        self._workers: dict[str, WorkerInfo] = {}
        self._by_token: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Read every worker that was not revoked from the store."""
        for wid, name, token_hash, tiers, slots, owner in await self._store.fetchall(
            "SELECT id, name, token_hash, tiers, slots, owner_address FROM workers WHERE revoked_at = 0"
        ):
            self._workers[wid] = WorkerInfo(
                wid,
                name,
                frozenset(orjson.loads(tiers)),
                slots,
                owner_address=owner,
                standing=self._standing(),
            )
            self._by_token[token_hash] = wid

    async def _learn(self, token_hash: str) -> str | None:
        """A worker registered through another core, read from the store (None if there is none)."""
        row = await self._store.fetchone(
            "SELECT id, name, tiers, slots, owner_address FROM workers WHERE token_hash = ? AND revoked_at = 0",
            (token_hash,),
        )
        if row is None:
            return None
        wid, name, tiers, slots, owner = row
        if wid not in self._workers:
            self._workers[wid] = WorkerInfo(
                wid,
                name,
                frozenset(orjson.loads(tiers)),
                int(slots),
                owner_address=owner,
                standing=self._standing(),
            )
        self._by_token[token_hash] = wid
        return str(wid)

    def _standing(self) -> Standing:

        return Standing(earned=self._probation)

    def __iter__(self) -> Iterator[WorkerInfo]:
        return iter(self._workers.values())

    def get(self, worker_id: str) -> WorkerInfo | None:
        """The worker with ``worker_id``, if registered."""
        return self._workers.get(worker_id)

    async def register(
        self,
        *,
        name: str,
        tiers: list[str],
        slots: int,
        ip: str,
        join_token: str = "",
        owner_address: str = "",
        owner_signature: str = "",
        signed_at_ms: int = 0,
    ) -> tuple[WorkerInfo, str]:
        """Create a worker (if the join policy lets it in); returns it and its token (shown once).

        Registrations are rate-limited per caller address (RESOURCE_EXHAUSTED with when to retry).
        """
        wait = self._registrations.wait_for(ip, time.monotonic())
        if wait > 0:
            raise RateLimitedError("too many worker registrations from this address", retry_after_s=wait)
        self._registrations.take(ip, time.monotonic())
        if len(name) > MAX_WORKER_NAME:
            raise InvalidArgumentError(f"name: longer than {MAX_WORKER_NAME} characters", field="name")
        chosen = check_tiers(tiers)
        slots = check_slots(slots)
        async with self._lock:  # one registration at a time: a join token's uses are counted exactly
            admitted = await self.joining.admit(
                name=name,
                join_token=join_token,
                owner_address=owner_address,
                owner_signature=owner_signature,
                signed_at_ms=signed_at_ms,
            )
            worker_id = new_id("wrk")
            token = "wtok_" + secrets.token_urlsafe(32)
            token_hash = hash_token(token)
            now = now_ms()
            await self._store.write(
                [
                    *admitted.rows,
                    (
                        "INSERT INTO workers (id, name, token_hash, tiers, slots, created_at, last_seen,"
                        " owner_address, join_token_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            worker_id,
                            name or worker_id,
                            token_hash,
                            orjson.dumps(sorted(chosen)).decode(),
                            slots,
                            now,
                            now,
                            admitted.owner_address,
                            admitted.join_token_id,
                        ),
                    ),
                ]
            )
        info = WorkerInfo(
            worker_id,
            name or worker_id,
            chosen,
            slots,
            owner_address=admitted.owner_address,
            standing=self._standing(),
        )
        self._workers[worker_id] = info
        self._by_token[token_hash] = worker_id
        return info, token

    async def authenticate(self, token: str, *, polling: bool = False) -> WorkerInfo:
        """The worker holding ``token`` (now seen alive); UNAUTHENTICATED otherwise. ``polling``: the
        call is one of the pull path's (the worker counts as active for a while without a stream)."""
        if not token:
            raise UnauthenticatedError("worker token required (Authorization: Bearer <workerToken>)")
        token_hash = hash_token(token)
        worker_id = self._by_token.get(token_hash)
        if worker_id is None and self._shared:
            worker_id = await self._learn(token_hash)
        if worker_id is None:
            raise UnauthenticatedError("unknown worker token")
        info = self._workers[worker_id]
        info.last_seen = time.monotonic()
        if polling:
            info.last_polled = info.last_seen
        return info

    async def revoke(self, worker_id: str) -> WorkerInfo | None:
        """Revoke a worker: its token stops working (durably first); returns it if this core knows it, so
        its connection can be closed (among several cores, the worker may be known only to another).
        NOT_FOUND for an unknown or already revoked worker."""
        info = self._workers.get(worker_id)
        if info is None and not (
            self._shared
            and await self._store.fetchone(
                "SELECT id FROM workers WHERE id = ? AND revoked_at = 0", (worker_id,)
            )
        ):
            raise NotFoundError(f"worker_id: no worker {worker_id!r}", field="worker_id")
        await self._store.write([("UPDATE workers SET revoked_at = ? WHERE id = ?", (now_ms(), worker_id))])
        self._workers.pop(worker_id, None)
        self._by_token = {h: w for h, w in self._by_token.items() if w != worker_id}
        return info

    def forget(self, worker_id: str) -> WorkerInfo | None:
        """Forget a worker another core revoked (the store already says so); returns it if it was known."""
        info = self._workers.pop(worker_id, None)
        if info is not None:
            self._by_token = {h: w for h, w in self._by_token.items() if w != worker_id}
        return info

    def active(self, now: float, recent_s: float) -> int:
        """Workers holding a stream now, or that called the pull path within ``recent_s`` seconds (a
        worker whose stream ended is not counted for having been connected recently)."""
        return sum(
            1
            for w in self._workers.values()
            if w.connection is not None or (w.last_polled and now - w.last_polled < recent_s)
        )
