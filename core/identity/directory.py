"""Users, sessions, API keys and the operator: who a bearer secret belongs to.

Secrets (session tokens, API keys, the operator token) are random, shown once, and stored only as
SHA-256 hashes. Everything is loaded from the store at start-up, and memory follows the store: a
user, a session or a key exists in memory only once the write that creates it has committed, and
is forgotten only once the write that ends it has committed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ashao.v1 import account_pb2
from ashao_common.files import read_or_create_secret
from core.errors import InvalidArgumentError, NotFoundError, UnauthenticatedError
from core.identity.principal import Principal, hash_secret
from core.ids import new_id
from core.store import Statement, Store, now_ms

MAX_KEY_NAME = 64


@dataclass(frozen=True, slots=True)
class User:
    """A wallet that signed in."""

    id: str
    address: str
    created_at_ms: int

    def to_proto(self) -> account_pb2.User:
        """The wire form."""
        return account_pb2.User(id=self.id, address=self.address, created_at_ms=self.created_at_ms)


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session to open: its rows, and what memory learns once they committed."""

    token: str = field(repr=False)
    token_hash: str
    user_id: str
    expires_at: float
    rows: list[Statement]


class Directory:
    """Every user, live session and active API key."""

    def __init__(
        self, *, store: Store, data_dir: Path, session_ttl_s: float, revalidate_s: float | None = None
    ) -> None:
        """``revalidate_s``: among several cores (which sign users in and out too), what memory holds is
        a cache: a credential it does not know is looked up in the store, and one it knows is checked
        again after this many seconds. None: this core is the only one, and memory is the truth."""
        self._store = store
        self._data_dir = data_dir
        self._session_ttl_s = session_ttl_s
        self._revalidate_s = revalidate_s
        self._users: dict[str, User] = {}
        self._by_address: dict[str, str] = {}
        self._sessions: dict[str, tuple[str, float]] = {}
        self._api_keys: dict[str, str] = {}
        self._checked: dict[str, float] = {}
        """When each cached credential (by hash) was last read from the store (shared mode)."""
        self._operator_hash = ""

    async def load(self) -> None:
        """Load users, live sessions and active keys; create the operator token on first start."""
        for uid, address, created in await self._store.fetchall("SELECT id, address, created_at FROM users"):
            self._remember(User(uid, address, int(created)))
        for token_hash, uid, expires in await self._store.fetchall(
            "SELECT token_hash, user_id, expires_at FROM sessions WHERE expires_at > ? AND revoked = 0",
            (now_ms(),),
        ):
            self._sessions[token_hash] = (uid, expires / 1000)
        for key_hash, uid in await self._store.fetchall(
            "SELECT key_hash, user_id FROM api_keys WHERE revoked_at = 0"
        ):
            self._api_keys[key_hash] = uid
        self.load_operator_token()

    def load_operator_token(self) -> None:
        """Read the operator token from ``<data_dir>/operator.token``, creating it on first start."""
        fresh = f"op_{secrets.token_urlsafe(32)}\n".encode()
        token = read_or_create_secret(self._data_dir / "operator.token", fresh).decode().strip()
        self._operator_hash = hash_secret(token)

    # -- who is calling -----------------------------------------------------------------------

    async def resolve(self, bearer: str, ip: str) -> Principal:
        """The principal behind a bearer secret (anonymous without one; UNAUTHENTICATED if bad)."""
        if not bearer:
            return Principal("anonymous", ip=ip)
        h = hash_secret(bearer)
        if self._revalidate_s is not None and bearer.startswith(("sess_", "ak_")):
            checked = self._checked.get(h)
            if checked is None or time.monotonic() - checked > self._revalidate_s:
                await self._refresh(h, session=bearer.startswith("sess_"))
        if bearer.startswith("sess_"):
            entry = self._sessions.get(h)
            if entry is None or entry[1] < time.time():
                if entry is not None:
                    del self._sessions[h]  # expired in the store too: memory only catches up
                raise UnauthenticatedError("session expired or signed out; sign in again")
            return Principal("user", entry[0], ip)
        if bearer.startswith("ak_"):
            uid = self._api_keys.get(h)
            if uid is None:
                raise UnauthenticatedError("unknown or revoked API key")
            return Principal("user", uid, ip)
        if bearer.startswith("op_") and secrets.compare_digest(h, self._operator_hash):
            return Principal("operator", ip=ip)
        raise UnauthenticatedError("unknown credentials")

    async def _refresh(self, h: str, *, session: bool) -> None:
        """Read one credential (by hash) from the store into memory, or drop it from memory."""
        if session:
            row = await self._store.fetchone(
                "SELECT user_id, expires_at FROM sessions WHERE token_hash = ? AND revoked = 0", (h,)
            )
            if row is None:
                self._sessions.pop(h, None)
            else:
                self._sessions[h] = (str(row[0]), int(row[1]) / 1000)
                await self._learn_user(str(row[0]))
        else:
            row = await self._store.fetchone(
                "SELECT user_id FROM api_keys WHERE key_hash = ? AND revoked_at = 0", (h,)
            )
            if row is None:
                self._api_keys.pop(h, None)
            else:
                self._api_keys[h] = str(row[0])
                await self._learn_user(str(row[0]))
        self._checked[h] = time.monotonic()
        if len(self._checked) > 200_000:  # bounded: forget the oldest checks (they are read again)
            for key in list(self._checked)[:100_000]:
                del self._checked[key]

    async def _learn_user(self, user_id: str) -> None:
        if user_id in self._users:
            return
        row = await self._store.fetchone("SELECT id, address, created_at FROM users WHERE id = ?", (user_id,))
        if row is not None:
            self._remember(User(str(row[0]), str(row[1]), int(row[2])))

    async def find(self, user: str) -> User:
        """A user from an id or a wallet address (read from the store when another core may have made
        it); NOT_FOUND otherwise."""
        found = self._users.get(user) or self.by_address(user)
        if found is None and self._revalidate_s is not None:
            if user.startswith("usr_"):
                await self._learn_user(user)
                found = self._users.get(user)
            else:
                found = await self.lookup_address(user)
        if found is None:
            raise NotFoundError(f"user: no user {user!r}", field="user")
        return found

    async def lookup_address(self, address: str) -> User | None:
        """The user of a wallet address (read from the store when another core may have made it)."""
        user = self.by_address(address)
        if user is None and self._revalidate_s is not None:
            row = await self._store.fetchone(
                "SELECT id, address, created_at FROM users WHERE address = ?", (address,)
            )
            if row is not None:
                user = User(str(row[0]), str(row[1]), int(row[2]))
                self._remember(user)
        return user

    # -- users --------------------------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        """The user with ``user_id``."""
        return self._users.get(user_id)

    def by_address(self, address: str) -> User | None:
        """The user of a wallet address."""
        uid = self._by_address.get(address)
        return self._users.get(uid) if uid else None

    def find_user(self, user: str) -> User:
        """A user from an id or a wallet address; NOT_FOUND otherwise."""
        found = self._users.get(user) or self.by_address(user)
        if found is None:
            raise NotFoundError(f"user: no user {user!r}", field="user")
        return found

    def plan_user(self, address: str) -> tuple[User, list[Statement]]:
        """A new user for ``address`` and the rows creating it (remembered by ``created`` once durable)."""
        user = User(new_id("usr"), address, now_ms())
        return user, [
            (
                "INSERT INTO users (id, address, created_at) VALUES (?,?,?)",
                (user.id, address, user.created_at_ms),
            )
        ]

    def created(self, user: User) -> None:
        """The rows of ``plan_user`` committed."""
        self._remember(user)

    def _remember(self, user: User) -> None:
        self._users[user.id] = user
        self._by_address[user.address] = user.id

    # -- sessions -----------------------------------------------------------------------------

    def plan_session(self, user_id: str) -> NewSession:
        """A new session and the rows opening it (usable once ``opened`` is called after commit)."""
        token = "sess_" + secrets.token_urlsafe(32)
        expires = time.time() + self._session_ttl_s
        h = hash_secret(token)
        rows: list[Statement] = [
            (
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, revoked) VALUES (?,?,?,?,0)",
                (h, user_id, now_ms(), int(expires * 1000)),
            )
        ]
        return NewSession(token, h, user_id, expires, rows)

    def opened(self, session: NewSession) -> None:
        """The rows of ``plan_session`` committed."""
        self._sessions[session.token_hash] = (session.user_id, session.expires_at)

    async def close_session(self, token: str) -> None:
        """End a session: written first, forgotten once durable (a failed write leaves it open)."""
        h = hash_secret(token)
        await self._store.write([("UPDATE sessions SET revoked = 1 WHERE token_hash = ?", (h,))])
        self._sessions.pop(h, None)

    def forget_expired(self, now: float | None = None) -> int:
        """Drop sessions past their expiry from memory; returns how many."""
        now = time.time() if now is None else now
        gone = [h for h, (_, expires) in self._sessions.items() if expires < now]
        for h in gone:
            del self._sessions[h]
        return len(gone)

    # -- API keys -----------------------------------------------------------------------------

    async def create_api_key(self, user_id: str, name: str) -> tuple[str, str, int]:
        """(key id, secret, created_at_ms) of a new key, usable once durable."""
        if len(name) > MAX_KEY_NAME:
            raise InvalidArgumentError(f"name: longer than {MAX_KEY_NAME} characters", field="name")
        key_id = new_id("key")
        secret = "ak_" + secrets.token_urlsafe(32)
        h = hash_secret(secret)
        created = now_ms()
        await self._store.write(
            [
                (
                    "INSERT INTO api_keys (id, user_id, key_hash, name, created_at, revoked_at)"
                    " VALUES (?,?,?,?,?,0)",
                    (key_id, user_id, h, name, created),
                )
            ]
        )
        self._api_keys[h] = user_id
        return key_id, secret, created

    async def list_api_keys(self, user_id: str) -> list[tuple[str, str, int, int]]:
        """(id, name, created, revoked) of the user's keys, newest first."""
        rows = await self._store.fetchall(
            "SELECT id, name, created_at, revoked_at FROM api_keys WHERE user_id = ? ORDER BY created_at DESC",
            (user_id,),
        )
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    async def revoke_api_key(self, user_id: str, key_id: str) -> None:
        """Revoke one of the user's keys (NOT_FOUND for another user's); forgotten once durable."""
        row = await self._store.fetchone(
            "SELECT key_hash FROM api_keys WHERE id = ? AND user_id = ? AND revoked_at = 0", (key_id, user_id)
        )
        if row is None:
            raise NotFoundError(f"keyId: no active key {key_id!r}", field="keyId")
        await self._store.write([("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now_ms(), key_id))])
        self._api_keys.pop(row[0], None)
