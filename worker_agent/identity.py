"""The worker's identity: registration with the core, and the credentials file that keeps it.

``<data-dir>/worker-<name>.json`` holds ``{"workerId", "workerToken"}``, readable by its owner
only (mode 0600) and replaced atomically, so a crash mid-write never leaves a worker without its
token or with half of one.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from nacl.signing import SigningKey

from ashao.v1 import worker_pb2, worker_pb2_grpc
from ashao_common.base58 import b58encode
from ashao_common.files import write_secret
from worker_agent import AgentError


class CredentialsError(AgentError):
    """The credentials file exists but cannot be used."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the worker authenticates with."""

    worker_id: str
    worker_token: str = field(repr=False)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying the token."""
        return (("authorization", f"Bearer {self.worker_token}"),)


def credentials_path(data_dir: Path, name: str) -> Path:
    """Where the credentials of worker ``name`` live (the name made safe for a file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "worker"
    return data_dir / f"worker-{safe}.json"


def load_credentials(path: Path) -> Credentials | None:
    """The stored credentials, or None when there are none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from exc
    try:
        doc = orjson.loads(raw)
        worker_id, token = doc["workerId"], doc["workerToken"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CredentialsError(f"{path} is not a credentials file; move it away to register anew") from exc
    if not (isinstance(worker_id, str) and isinstance(token, str) and worker_id and token):
        raise CredentialsError(f"{path} holds no worker id and token; move it away to register anew")
    return Credentials(worker_id, token)


def save_credentials(path: Path, creds: Credentials) -> None:
    """Write ``creds`` to ``path`` atomically with mode 0600 (durable once this returns)."""
    write_secret(path, orjson.dumps({"workerId": creds.worker_id, "workerToken": creds.worker_token}))


def load_owner_key(path: Path) -> SigningKey:
    """The owner's Ed25519 key from a Solana keypair file: a JSON array of 64 bytes (the 32-byte seed,
    then the public key)."""
    try:
        raw = bytes(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise CredentialsError(f"{path} is not a keypair file (a JSON array of 64 bytes): {exc}") from exc
    if len(raw) != 64:
        raise CredentialsError(f"{path} holds {len(raw)} bytes, not a 64-byte keypair")
    key = SigningKey(raw[:32])
    if bytes(key.verify_key) != raw[32:]:
        raise CredentialsError(f"{path}: its public key does not belong to its secret key")
    return key


def registration_request(
    *, name: str, tiers: tuple[str, ...], slots: int, join_token: str = "", owner: SigningKey | None = None
) -> worker_pb2.RegisterWorkerRequest:
    """What RegisterWorker is sent: a join token, or the owner's signature binding the worker to its
    wallet (``ashao-worker-registration/v1\n<address>\n<name>\n<signed_at_ms>``)."""
    request = worker_pb2.RegisterWorkerRequest(name=name, tiers=tiers, slots=slots, join_token=join_token)
    if owner is not None:
        address = b58encode(bytes(owner.verify_key))
        signed_at = int(time.time() * 1000)
        message = f"ashao-worker-registration/v1\n{address}\n{name}\n{signed_at}".encode()
        request.owner_address = address
        request.owner_signature = base64.b64encode(owner.sign(message).signature).decode()
        request.signed_at_ms = signed_at
    return request


async def register(
    stub: worker_pb2_grpc.WorkerServiceAsyncStub,
    request: worker_pb2.RegisterWorkerRequest,
    *,
    timeout_s: float,
) -> Credentials:
    """Create a worker at the core. Raises ``grpc.aio.AioRpcError`` as the call does."""
    r = await stub.RegisterWorker(request, timeout=timeout_s)
    return Credentials(r.worker_id, r.worker_token)
