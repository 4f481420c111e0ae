"""Wallet sign-in (Sign-In-with-Solana): the issued message, and the check of its signature.

Sign-in is a nonce challenge in the EIP-4361 text layout used by Sign-In-with-Solana: the core
issues the exact message; the wallet signs its UTF-8 bytes with its Ed25519 key; the core checks
that the message is byte for byte the one it issued (so no field can be altered), that it was
issued for this address and domain and has not expired, consumes the nonce, and verifies the
signature with the address (the base58 public key) using PyNaCl.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ashao_common.base58 import b58decode
from core.errors import InvalidArgumentError, UnauthenticatedError

MAX_SIGNATURE_CHARS = 128
"""A 64-byte signature is 88 characters in base58 or base64: anything longer is refused unread."""
MAX_MESSAGE_CHARS = 2048
"""An issued sign-in message is a few hundred characters."""


@dataclass(frozen=True, slots=True)
class SignInSettings:
    """What the sign-in message says about this deployment."""

    domain: str
    uri: str
    chain_id: str = "mainnet"
    statement: str = "Sign in to ashao."
    nonce_ttl_s: float = 300.0
    session_ttl_s: float = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Challenge:
    """An issued sign-in message awaiting its signature."""

    address: str
    message: str
    expires_at: float


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class WalletSignIn:
    """Issues sign-in messages and checks their signatures; each nonce works once."""

    MAX_CHALLENGES = 100_000

    def __init__(self, settings: SignInSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        """Wall-clock seconds; replaceable (tests move time forward with it)."""
        self._challenges: dict[str, Challenge] = {}

    @property
    def pending(self) -> int:
        """Challenges issued and not yet used or expired."""
        return len(self._challenges)

    def challenge(self, address: str) -> tuple[str, str, float]:
        """Issue the message to sign: (message, nonce, expires_at)."""
        public_key_of(address)
        now = self.clock()
        if len(self._challenges) >= self.MAX_CHALLENGES:
            self._challenges = {n: c for n, c in self._challenges.items() if c.expires_at > now}
            if len(self._challenges) >= self.MAX_CHALLENGES:
                raise UnauthenticatedError("too many pending sign-ins; try again shortly")
        nonce = secrets.token_hex(16)
        expires = now + self.settings.nonce_ttl_s
        s = self.settings
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
        if len(message) > MAX_MESSAGE_CHARS:
            raise UnauthenticatedError("not a sign-in message")
        fields = _parse(message)
        if fields.get("domain") != self.settings.domain:
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
        if issued.expires_at < self.clock():
            self._challenges.pop(nonce, None)
            raise UnauthenticatedError("sign-in message expired")
        key = public_key_of(address)
        try:
            key.verify(message.encode(), decode_signature(signature))
        except (BadSignatureError, ValueError) as exc:
            raise UnauthenticatedError("signature does not match the address") from exc
        # Consumed only after every check passed, and before any await: single use.
        if self._challenges.pop(nonce, None) is None:
            raise UnauthenticatedError("unknown or already used nonce")


def public_key_of(address: str) -> VerifyKey:
    """The Ed25519 key a base58 address names; INVALID_ARGUMENT naming ``address`` otherwise."""
    try:
        raw = b58decode(address)
    except ValueError as exc:
        raise InvalidArgumentError(f"address: not base58 ({exc})", field="address") from exc
    if len(raw) != 32:
        raise InvalidArgumentError("address: not a 32-byte Ed25519 public key", field="address")
    return VerifyKey(raw)


def decode_signature(signature: str) -> bytes:
    """A 64-byte signature from base58 or base64; ValueError otherwise (long input refused unread)."""
    if len(signature) > MAX_SIGNATURE_CHARS:
        raise ValueError("signature too long")
    try:
        raw = b58decode(signature)
        if len(raw) == 64:
            return raw
    except ValueError:
        pass
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error as exc:
        raise ValueError("signature is neither base58 nor base64") from exc
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
