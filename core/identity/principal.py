"""The caller of one request, and the checks every operation makes on it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.errors import PermissionDeniedError, UnauthenticatedError


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request."""

    kind: str
    """"user", "operator", "anonymous", "service" (the core acting for itself, e.g. the relay), or
    "peer" (another core following a job for its own readers, whom it authorized itself)."""
    user_id: str = ""
    ip: str = ""

    @property
    def owner(self) -> str:
        """The owner key of what this caller creates (jobs, conversations)."""
        if self.kind == "user":
            return self.user_id
        return f"{'svc' if self.kind == 'service' else 'ip'}:{self.ip}"

    def may_see(self, owner: str) -> bool:
        """A user's things are theirs alone; anonymous things are reachable by their unguessable id."""
        return self.kind == "peer" or not owner.startswith("usr_") or owner == self.user_id


def require_user(p: Principal) -> str:
    """The user id of a signed-in caller; UNAUTHENTICATED otherwise."""
    if p.kind != "user":
        raise UnauthenticatedError("sign in first")
    return p.user_id


def require_operator(p: Principal) -> None:
    """Refuse anyone but the operator."""
    if p.kind != "operator":
        raise PermissionDeniedError("operator token required")


def hash_secret(secret: str) -> str:
    """How secrets (session tokens, API keys, the operator token) are stored: SHA-256, never in clear."""
    return hashlib.sha256(secret.encode()).hexdigest()
