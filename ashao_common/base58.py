"""Base58 (Bitcoin alphabet), as Solana writes addresses, keys and signatures (the core reads them; a
worker writes its owner's address).

Decoding is quadratic in the length of its input, so every caller bounds the input first
(``MAX_CHARS`` covers the longest value a wallet writes: a 64-byte signature is at most 88
characters); a longer string is refused before any arithmetic.
"""

from __future__ import annotations

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
MAX_CHARS = 128


def b58encode(data: bytes) -> str:
    """The base58 text of ``data``."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str, *, max_chars: int = MAX_CHARS) -> bytes:
    """Inverse of :func:`b58encode`; ValueError on a bad character or a text over ``max_chars``."""
    if len(text) > max_chars:
        raise ValueError(f"longer than {max_chars} characters")
    n = 0
    for c in text:
        i = _INDEX.get(c)
        if i is None:
            raise ValueError(f"invalid base58 character {c!r}")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body
