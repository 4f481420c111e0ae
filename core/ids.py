"""Opaque prefixed ids (``job_…``, ``conv_…``, ``wrk_…``, ``img_…``, ``usr_…``, ``key_…``, ``jtk_…``)."""

from __future__ import annotations

import re
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_BODY = 22  # 62**22 > 2**128
ID_PATTERN = re.compile(r"^(job|conv|wrk|img|usr|key|jtk|core)_[0-9A-Za-z]{8,64}$")


class _Entropy:
    """Random bytes from the OS, fetched 4 KiB at a time: one system call per 256 ids, not per id."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def take16(self) -> bytes:
        if self._pos + 16 > len(self._buf):
            self._buf, self._pos = secrets.token_bytes(4096), 0
        chunk = self._buf[self._pos : self._pos + 16]
        self._pos += 16
        return chunk


_entropy = _Entropy()


def new_id(prefix: str) -> str:
    """An opaque id such as ``job_4fQ…``: 128 random bits in base 62 (22 characters)."""
    n = int.from_bytes(_entropy.take16())
    body = []
    for _ in range(_ID_BODY):
        n, r = divmod(n, 62)
        body.append(_ALPHABET[r])
    return f"{prefix}_" + "".join(body)


def is_id(value: str, prefix: str) -> bool:
    """Whether ``value`` is shaped like an id with ``prefix``."""
    return value.startswith(prefix + "_") and ID_PATTERN.match(value) is not None
