"""Who is calling: wallet sign-in (Sign-In-with-Solana), sessions, API keys, the operator.

Sign-in is a nonce challenge in the EIP-4361 text layout used by Sign-In-with-Solana: the core
issues the exact message; the wallet signs its UTF-8 bytes with its Ed25519 key; the core checks
that the message is byte for byte the one it issued (so no field can be altered), that it was
issued for this address and domain and has not expired, consumes the nonce, and verifies the
signature with the address (the base58 public key) using PyNaCl.

Secrets (session tokens, API keys, the operator token) are random, shown once, and stored only as
SHA-256 hashes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ashao_common.files import read_or_create_secret
from core.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from core.jobs import new_id
from core.store import Statement, Store, now_ms

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58 (Bitcoin alphabet), as Solana writes addresses and signatures."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(B58_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; ValueError on a bad character."""
    n = 0
    for c in text:
        if c not in _B58_INDEX:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + _B58_INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def hash_secret(secret: str) -> str:
    """How secrets are stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    kind: str
    """"user", "operator", "anonymous", or "service" (the core acting for itself, e.g. the relay)."""
    user_id: str = ""
    ip: str = ""

    @property
    def owner(self) -> str:
        """The owner key of what this caller creates (jobs, conversations)."""
        if self.kind == "user":
            return self.user_id
        return f"{'svc' if self.kind == 'service' else 'ip'}:{self.ip}"


@dataclass(frozen=True, slots=True)
class Challenge:
    """An issued sign-in message awaiting its signature."""

    address: str
    message: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class SignInSettings:
    """What the sign-in message says about this deployment."""

    domain: str
    uri: str
    chain_id: str = "mainnet"
    statement: str = "Sign in to ashao."
    nonce_ttl_s: float = 300.0
    session_ttl_s: float = 7 * 24 * 3600.0


class Accounts:
    """Users, sign-in challenges, sessions and API keys."""

    MAX_CHALLENGES = 100_000

    def __init__(self, *, store: Store, signin: SignInSettings, data_dir: Path) -> None:
        self._store = store
        self.signin = signin
        self._data_dir = data_dir
        self._challenges: dict[str, Challenge] = {}
        self._sessions: dict[str, tuple[str, float]] = {}
        self._api_keys: dict[str, str] = {}
        self._users_by_address: dict[str, str] = {}
        self._addresses: dict[str, str] = {}
        self._operator_hash = ""

    async def load(self) -> None:
        """Load users, live sessions and active API keys; create the operator token on first start."""
        for uid, address in await self._store.fetchall("SELECT id, address FROM users"):
            self._users_by_address[address] = uid
            self._addresses[uid] = address
        now = now_ms()
        for token_hash, uid, expires in await self._store.fetchall(
            "SELECT token_hash, user_id, expires_at FROM sessions WHERE expires_at > ? AND revoked = 0",
            (now,),
        ):
            self._sessions[token_hash] = (uid, expires / 1000)
        for key_hash, uid in await self._store.fetchall(
            "SELECT key_hash, user_id FROM api_keys WHERE revoked_at = 0"
        ):
            self._api_keys[key_hash] = uid
        self._operator_hash = hash_secret(self._operator_token())

    def _operator_token(self) -> str:
        fresh = f"op_{secrets.token_urlsafe(32)}\n".encode()
        return read_or_create_secret(self._data_dir / "operator.token", fresh).decode().strip()

    # -- who is calling ---------------------------------------------------------------------

    def resolve(self, bearer: str, ip: str) -> Principal:
        """The principal behind a bearer secret (anonymous without one; UNAUTHENTICATED if bad)."""
        if not bearer:
            return Principal("anonymous", ip=ip)
        h = hash_secret(bearer)
        if bearer.startswith("sess_"):
            entry = self._sessions.get(h)
            if entry is None or entry[1] < time.time():
                self._sessions.pop(h, None)
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

    @staticmethod
    def require_user(p: Principal) -> str:
        """The user id of a signed-in caller; UNAUTHENTICATED otherwise."""
        if p.kind != "user":
            raise UnauthenticatedError("sign in first")
        return p.user_id

    @staticmethod
    def require_operator(p: Principal) -> None:
        """Refuse anyone but the operator."""
        if p.kind != "operator":
            raise PermissionDeniedError("operator token required")

    def address_of(self, user_id: str) -> str:
        """A user's wallet address."""
        return self._addresses.get(user_id, "")

    def find_user(self, user: str) -> str:
        """A user id from an id or a wallet address; NOT_FOUND otherwise."""
        if user in self._addresses:
            return user
        uid = self._users_by_address.get(user)
        if uid is None:
            raise NotFoundError(f"user: no user {user!r}", field="user")
        return uid

    # -- sign-in ----------------------------------------------------------------------------

    def challenge(self, address: str) -> tuple[str, str, float]:
        """Issue the message to sign: (message, nonce, expires_at)."""
        public_key_of(address)
        now = time.time()
        if len(self._challenges) >= self.MAX_CHALLENGES:
            self._challenges = {n: c for n, c in self._challenges.items() if c.expires_at > now}
            if len(self._challenges) >= self.MAX_CHALLENGES:
                raise UnauthenticatedError("too many pending sign-ins; try again shortly")
        nonce = secrets.token_hex(16)
        expires = now + self.signin.nonce_ttl_s
        s = self.signin
        message = (
            f"{s.domain} wants you to sign in with your Solana account:\n"
            f"{address}\n\n{s.statement}\n\n"
            f"URI: {s.uri}\nVersion: 1\nChain ID: {s.chain_id}\nNonce: {nonce}\n"
            f"Issued At: {_iso(now)}\nExpiration Time: {_iso(expires)}"
        )
        self._challenges[nonce] = Challenge(address, message, expires)
        return message, nonce, expires

    def check_signed(self, address: str, message: str, signature: str) -> None:
        """Verify a signed challenge and consume its nonce; UNAUTHENTICATED saying why otherwise."""
        fields = _parse(message)
        if fields.get("domain") != self.signin.domain:
            raise UnauthenticatedError("sign-in message is for another domain")
        if fields.get("address") != address:
            raise UnauthenticatedError("sign-in message is for another address")
        nonce = fields.get("Nonce", "")
        issued = self._challenges.get(nonce)
        if issued is None:
            raise UnauthenticatedError("unknown or already used nonce")
        if issued.address != address:
            raise UnauthenticatedError("nonce was issued to another address")
        if issued.message != message:
            raise UnauthenticatedError("sign-in message was altered")
        if issued.expires_at < time.time():
            self._challenges.pop(nonce, None)
            raise UnauthenticatedError("sign-in message expired")
        key = public_key_of(address)
        try:
            sig = decode_signature(signature)
            key.verify(message.encode(), sig)
        except (BadSignatureError, ValueError) as exc:
            raise UnauthenticatedError("signature does not match the address") from exc
        # Consumed only after every check passed, and before any await: single use.
        if self._challenges.pop(nonce, None) is None:
            raise UnauthenticatedError("unknown or already used nonce")

    def user_for(self, address: str) -> tuple[str, bool, list[Statement]]:
        """(user id, created now?, rows to write) for a wallet that just signed in."""
        uid = self._users_by_address.get(address)
        if uid is not None:
            return uid, False, []
        uid = new_id("usr")
        self._users_by_address[address] = uid
        self._addresses[uid] = address
        return (
            uid,
            True,
            [("INSERT INTO users (id, address, created_at) VALUES (?,?,?)", (uid, address, now_ms()))],
        )

    def open_session(self, user_id: str) -> tuple[str, float, list[Statement]]:
        """(token, expires_at, rows) of a new session."""
        token = "sess_" + secrets.token_urlsafe(32)
        expires = time.time() + self.signin.session_ttl_s
        h = hash_secret(token)
        self._sessions[h] = (user_id, expires)
        rows: list[Statement] = [
            (
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, revoked) VALUES (?,?,?,?,0)",
                (h, user_id, now_ms(), int(expires * 1000)),
            )
        ]
        return token, expires, rows

    def close_session(self, token: str) -> list[Statement]:
        """Rows ending a session."""
        h = hash_secret(token)
        self._sessions.pop(h, None)
        return [("UPDATE sessions SET revoked = 1 WHERE token_hash = ?", (h,))]

    # -- API keys ---------------------------------------------------------------------------

    def new_api_key(self, user_id: str, name: str) -> tuple[str, str, list[Statement]]:
        """(key id, secret, rows) of a new API key."""
        if len(name) > 64:
            raise InvalidArgumentError("name: longer than 64 characters", field="name")
        key_id = new_id("key")
        secret = "ak_" + secrets.token_urlsafe(32)
        h = hash_secret(secret)
        self._api_keys[h] = user_id
        return (
            key_id,
            secret,
            [
                (
                    "INSERT INTO api_keys (id, user_id, key_hash, name, created_at, revoked_at) VALUES (?,?,?,?,?,0)",
                    (key_id, user_id, h, name, now_ms()),
                )
            ],
        )

    async def revoke_api_key(self, user_id: str, key_id: str) -> None:
        """Revoke one of the user's keys; NOT_FOUND for another user's."""
        row = await self._store.fetchone(
            "SELECT key_hash FROM api_keys WHERE id = ? AND user_id = ? AND revoked_at = 0", (key_id, user_id)
        )
        if row is None:
            raise NotFoundError(f"keyId: no active key {key_id!r}", field="keyId")
        self._api_keys.pop(row[0], None)
        await self._store.write([("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now_ms(), key_id))])


def public_key_of(address: str) -> VerifyKey:
    try:
        raw = b58decode(address)
    except ValueError as exc:
        raise InvalidArgumentError("address: not base58", field="address") from exc
    if len(raw) != 32:
        raise InvalidArgumentError("address: not a 32-byte Ed25519 public key", field="address")
    return VerifyKey(raw)


def decode_signature(signature: str) -> bytes:
    try:
        raw = b58decode(signature)
        if len(raw) == 64:
            return raw
    except ValueError:
        pass
    raw = base64.b64decode(signature, validate=True)
    if len(raw) != 64:
        raise ValueError("signature must be 64 bytes")
    return raw


def _parse(message: str) -> dict[str, str]:
    lines = message.split("\n")
    fields: dict[str, str] = {}
    suffix = " wants you to sign in with your Solana account:"
    if not lines or not lines[0].endswith(suffix) or len(lines) < 2:
        raise UnauthenticatedError("not a sign-in message")
    fields["domain"] = lines[0][: -len(suffix)]
    fields["address"] = lines[1]
    for line in lines[2:]:
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return fields
