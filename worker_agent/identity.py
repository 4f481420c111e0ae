"""The worker's identity: registration with the core, and the credentials file that keeps it.

``<data-dir>/worker-<name>.json`` holds ``{"workerId", "workerToken"}``, readable by its owner
only (mode 0600) and replaced atomically, so a crash mid-write never leaves a worker without its
token or with half of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ashao.v1 import worker_pb2, worker_pb2_grpc
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


async def register(
    stub: worker_pb2_grpc.WorkerServiceAsyncStub,
    *,
    name: str,
    tiers: tuple[str, ...],
    slots: int,
    timeout_s: float,
) -> Credentials:
    """Create a worker at the core. Raises ``grpc.aio.AioRpcError`` as the call does."""
    r = await stub.RegisterWorker(
        worker_pb2.RegisterWorkerRequest(name=name, tiers=tiers, slots=slots), timeout=timeout_s
    )
    return Credentials(r.worker_id, r.worker_token)
