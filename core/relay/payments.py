"""The relay's billing gate: a posted price, a single-use nonce, and the wallet's signed commitment.

The payment commitment a wallet signs is exactly these UTF-8 bytes (lines joined by "\\n"):
``ashao-relay-payment/v1``, the nonce, the price in credits (decimal), and the lowercase hex
SHA-256 of the message's UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from nacl.exceptions import BadSignatureError

from core.errors import InvalidArgumentError, NotFoundError, PaymentRequiredError
from core.identity.directory import Directory
from core.identity.wallet import decode_signature, public_key_of
from core.money.ledger import TREASURY, Ledger, Move, user_account
from core.money.pricing import PriceBoard

PAYMENT_TTL_S = 300.0
COMMITMENT_FORMAT = "ashao-relay-payment/v1\\n{nonce}\\n{price}\\n{sha256(message) hex}"
MAX_NONCES = 100_000


def commitment_bytes(nonce: str, price: int, message: str) -> bytes:
    """The bytes a wallet signs to commit to pay ``price`` for ``message``."""
    digest = hashlib.sha256(message.encode()).hexdigest()
    return f"ashao-relay-payment/v1\n{nonce}\n{price}\n{digest}".encode()


class PaymentGate:
    """Posts the price, checks commitments, charges and refunds."""

    def __init__(self, *, prices: PriceBoard, directory: Directory, ledger: Ledger) -> None:
        self._prices = prices
        self._directory = directory
        self._ledger = ledger
        self._nonces: dict[str, tuple[int, float]] = {}

    def challenge(self, message: str) -> PaymentRequiredError:
        """A fresh 402 with the posted price and a single-use nonce."""
        price = self._prices.current().price
        nonce = secrets.token_hex(16)
        now = time.time()
        if len(self._nonces) >= MAX_NONCES:
            self._nonces = {n: v for n, v in self._nonces.items() if v[1] > now}
            while len(self._nonces) >= MAX_NONCES:
                del self._nonces[next(iter(self._nonces))]
        self._nonces[nonce] = (price, now + PAYMENT_TTL_S)
        return PaymentRequiredError(
            "payment required",
            envelope={
                "error": "payment_required",
                "price": price,
                "currency": "credits",
                "nonce": nonce,
                "expires_at": int((now + PAYMENT_TTL_S) * 1000),
                "commitment_format": COMMITMENT_FORMAT,
                "message_sha256": hashlib.sha256(message.encode()).hexdigest(),
                "detail": "Sign the commitment bytes with your wallet key and retry with payment.",
            },
        )

    async def charge(self, message: str, payment: dict[str, Any] | None) -> list[Move]:
        """Check the commitment and move the price to the treasury (durable when this returns); a
        fresh 402 for anything missing, stale, unsigned or unfunded."""
        if not payment or not payment.get("nonce"):
            raise self.challenge(message)
        nonce, price, address = payment["nonce"], int(payment.get("price", 0)), payment.get("address", "")
        posted = self._nonces.pop(nonce, None)
        if posted is None or posted[1] < time.time() or posted[0] != price:
            raise self.challenge(message)
        try:
            key = public_key_of(address)
            key.verify(
                commitment_bytes(nonce, price, message), decode_signature(payment.get("signature", ""))
            )
        except (BadSignatureError, ValueError, InvalidArgumentError):
            raise self.challenge(message) from None
        try:
            uid = (await self._directory.find(address)).id

        except NotFoundError:
            raise self.challenge(message) from None
        moves = [Move(user_account(uid), TREASURY, price, "relay_charge", nonce)]
        try:
            await self._ledger.commit(moves)
        except PaymentRequiredError:
            raise self.challenge(message) from None
        return moves

    async def refund(self, charged: list[Move]) -> None:
        """Give back what ``charge`` took (nothing if it took nothing)."""
        if charged:
            await self._ledger.commit(
                [Move(m.credit, m.debit, m.amount, "relay_refund", m.ref) for m in charged]
            )
