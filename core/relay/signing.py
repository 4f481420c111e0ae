"""The service's Ed25519 key: created on first start, kept owner-only in the data directory.

Everything signed is an explicit byte string: the exact JSON body a client receives, or the
canonical JSON of a document (sorted keys, no insignificant whitespace, UTF-8), never a
re-serialised protobuf message.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from nacl.signing import SigningKey, VerifyKey

from ashao.v1 import relay_pb2
from ashao_common.base58 import b58encode
from ashao_common.files import read_or_create_secret


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON document: sorted keys, compact, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Signed:
    """Exact body bytes and their signature."""

    body: bytes
    signature: str
    key_id: str

    def to_proto(self) -> relay_pb2.SignedDocument:
        """The wire form."""
        return relay_pb2.SignedDocument(body=self.body, signature=self.signature, key_id=self.key_id)


class Signer:
    """Signs bytes with the service key."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self.public_key = bytes(key.verify_key)
        self.key_id = hashlib.sha256(self.public_key).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Signer:
        """The key in ``<data_dir>/ed25519.key`` (32-byte seed), created with mode 0600 if absent."""
        seed = read_or_create_secret(data_dir / "ed25519.key", bytes(SigningKey.generate()))
        return cls(SigningKey(seed))

    def reload(self, data_dir: Path) -> None:
        """Take the key now in ``<data_dir>/ed25519.key`` (a cluster's key, adopted at start)."""
        fresh = Signer.load_or_create(data_dir)
        self._key, self.public_key, self.key_id = fresh._key, fresh.public_key, fresh.key_id

    @property
    def public_key_b64(self) -> str:
        """The public key, base64."""
        return base64.b64encode(self.public_key).decode()

    @property
    def public_key_b58(self) -> str:
        """The public key, base58 (as wallets write keys)."""
        return b58encode(self.public_key)

    def sign(self, data: bytes) -> str:
        """The detached signature of ``data``, base64."""
        return base64.b64encode(self._key.sign(data).signature).decode()

    def document(self, document: Any) -> Signed:
        """Serialise ``document`` once and sign exactly those bytes."""
        body = orjson.dumps(document)
        return Signed(body, self.sign(body), self.key_id)

    def canonical(self, document: Any) -> Signed:
        """Sign the canonical JSON of ``document`` (for documents others must reproduce)."""
        body = canonical_json(document)
        return Signed(body, self.sign(body), self.key_id)


def verify(public_key_b64: str, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` signs ``data`` under ``public_key_b64`` (for tests and clients)."""
    try:
        VerifyKey(base64.b64decode(public_key_b64)).verify(data, base64.b64decode(signature_b64))
    except Exception:
        return False
    return True
