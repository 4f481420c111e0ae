"""Who may join as a worker: a join token the operator issued, or a wallet that binds the worker to
the owner its earnings belong to.

A join token (``join_…``) is random, shown once, stored as a SHA-256 hash, limited in uses and time,
and revocable. A wallet registration is the owner's Ed25519 signature of
``ashao-worker-registration/v1\\n<address>\\n<name>\\n<signed_at_ms>``, accepted within five minutes of
the core's clock and only once. Either way the registration's rows (a use of the token, the spent
signature) go in the same unit as the worker, so a token cannot be used past its limit and a
signature cannot be replayed, even by concurrent registrations.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError

from core.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from core.identity.wallet import decode_signature, public_key_of
from core.ids import new_id
from core.store import Statement, Store, now_ms

POLICIES = ("open", "token_or_wallet", "token", "wallet")
SIGNATURE_WINDOW_MS = 5 * 60 * 1000
DEFAULT_TOKEN_TTL_S = 7 * 24 * 3600
MAX_TOKEN_USES = 100_000


def registration_message(address: str, name: str, signed_at_ms: int) -> bytes:
    """The bytes a wallet signs to register a worker it owns."""
    return f"ashao-worker-registration/v1\n{address}\n{name}\n{signed_at_ms}".encode()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Admitted:
    """How a worker was let in, and the rows that record it (written with the worker)."""

    join_token_id: str = ""
    owner_address: str = ""
    rows: list[Statement] = field(default_factory=list)


class JoinPolicy:
    """Checks registrations against the policy; issues and revokes join tokens."""

    def __init__(self, *, store: Store, policy: str, clock: Callable[[], float] = time.time) -> None:
        if policy not in POLICIES:
            raise ValueError(f"worker registration policy must be one of {', '.join(POLICIES)}")
        self._store = store
        self.policy = policy
        self.clock = clock
        """Wall-clock seconds (replaceable in tests)."""

    async def admit(
        self, *, name: str, join_token: str, owner_address: str, owner_signature: str, signed_at_ms: int
    ) -> Admitted:
        """Whether a registration may proceed, and its rows; UNAUTHENTICATED saying why otherwise."""
        if join_token:
            if self.policy == "wallet":
                raise PermissionDeniedError("join_token: this network registers workers by wallet only")
            return await self._token(join_token)
        if owner_address or owner_signature:
            if self.policy == "token":
                raise PermissionDeniedError(
                    "owner_address: this network registers workers by join token only"
                )
            return await self._wallet(name, owner_address, owner_signature, signed_at_ms)
        if self.policy == "open":
            return Admitted()
        raise UnauthenticatedError(
            "registration needs a join token from the operator (join_token) or an owner wallet signature"
            " (owner_address, owner_signature, signed_at_ms)"
        )

    async def _token(self, token: str) -> Admitted:
        row = await self._store.fetchone(
            "SELECT id, uses_left, expires_at, revoked_at FROM join_tokens WHERE token_hash = ?",
            (_hash(token),),
        )
        if row is None:
            raise UnauthenticatedError("join_token: unknown join token")
        token_id, uses_left, expires_at, revoked_at = row[0], int(row[1]), int(row[2]), int(row[3])
        if revoked_at:
            raise UnauthenticatedError("join_token: revoked")
        if expires_at < self.clock() * 1000:
            raise UnauthenticatedError("join_token: expired")
        if uses_left <= 0:
            raise UnauthenticatedError("join_token: used up")
        # The CHECK (uses_left >= 0) refuses the unit if a concurrent registration took the last use.
        return Admitted(
            join_token_id=token_id,
            rows=[("UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = ?", (token_id,))],
        )

    async def _wallet(self, name: str, address: str, signature: str, signed_at_ms: int) -> Admitted:
        key = public_key_of(address)
        if abs(self.clock() * 1000 - signed_at_ms) > SIGNATURE_WINDOW_MS:
            raise UnauthenticatedError(
                "signed_at_ms: the registration was not signed within the last five minutes"
            )
        try:
            raw = decode_signature(signature)
            key.verify(registration_message(address, name, signed_at_ms), raw)
        except (BadSignatureError, ValueError) as exc:
            raise UnauthenticatedError(
                "owner_signature: does not sign this registration with owner_address"
            ) from exc
        digest = hashlib.sha256(raw).hexdigest()
        if await self._store.fetchone("SELECT 1 FROM used_signatures WHERE signature_sha256 = ?", (digest,)):
            raise UnauthenticatedError("owner_signature: already used; sign a new registration")
        # The primary key refuses the unit too, should two registrations race with one signature.
        return Admitted(
            owner_address=address,
            rows=[
                (
                    "INSERT INTO used_signatures (signature_sha256, created_at) VALUES (?, ?)",
                    (digest, now_ms()),
                )
            ],
        )

    async def issue(self, *, label: str, uses: int, ttl_s: int) -> tuple[str, str, int]:
        """A new join token: (token, id, expires_at_ms)."""
        if len(label) > 200:
            raise InvalidArgumentError("label: longer than 200 characters", field="label")
        if not 0 <= uses <= MAX_TOKEN_USES:
            raise InvalidArgumentError(f"uses: must be between 1 and {MAX_TOKEN_USES}", field="uses")
        if not 0 <= ttl_s <= 365 * 24 * 3600:
            raise InvalidArgumentError("ttl_s: at most a year", field="ttl_s")
        token = "join_" + secrets.token_urlsafe(32)
        token_id = new_id("jtk")
        now = now_ms()
        expires = now + (ttl_s or DEFAULT_TOKEN_TTL_S) * 1000
        await self._store.write(
            [
                (
                    "INSERT INTO join_tokens (id, token_hash, label, uses_left, expires_at, created_at)"
                    " VALUES (?,?,?,?,?,?)",
                    (token_id, _hash(token), label, uses or 1, expires, now),
                )
            ]
        )
        return token, token_id, expires

    async def revoke(self, token_id: str) -> None:
        """Revoke a join token; NOT_FOUND for an unknown one."""
        row = await self._store.fetchone("SELECT id FROM join_tokens WHERE id = ?", (token_id,))
        if row is None:
            raise NotFoundError(f"id: no join token {token_id!r}", field="id")
        await self._store.write(
            [("UPDATE join_tokens SET revoked_at = ? WHERE id = ?", (now_ms(), token_id))]
        )
