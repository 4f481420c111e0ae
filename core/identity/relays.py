"""Trusted relays: callers (the HTTP facade, or another gateway) allowed to speak for end users.

Only a trusted relay may name an end user's address (for rate limits and anonymous ownership); anyone
else is judged by its own peer address. A relay proves itself with a relay key in the call metadata
``x-ashao-relay-key``: the key in ``<data_dir>/relay.token`` (created 0600 at first start; give it to
facades on other machines), or one of the operator's extra keys. Keys are compared by SHA-256.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path

from ashao_common.files import read_or_create_secret
from core.identity.principal import hash_secret

RELAY_KEY_FILE = "relay.token"
RELAY_KEY_HEADER = "x-ashao-relay-key"


class RelayKeys:
    """The keys of trusted relays."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._hashes = {hash_secret(k) for k in keys if k}

    @classmethod
    def load(cls, data_dir: Path, extra: Iterable[str] = ()) -> RelayKeys:
        """The key of ``<data_dir>/relay.token`` (created if absent) and ``extra`` keys."""
        fresh = f"rly_{secrets.token_urlsafe(32)}\n".encode()
        key = read_or_create_secret(data_dir / RELAY_KEY_FILE, fresh).decode().strip()
        return cls([key, *extra])

    def trusted(self, key: str) -> bool:
        """Whether ``key`` belongs to a trusted relay."""
        return bool(key) and hash_secret(key) in self._hashes
