"""Moderation: a policy engine of categories and rules, plus an optional external classifier.

The policy is data (JSON): categories, each with rules (case-insensitive regular expressions or
literal phrases), whether it applies to ingress, egress or both, and the suggestion given to a
refused caller. Its SHA-256 (of its canonical JSON) identifies it in every safety-ledger record.
An external classifier speaking the OpenAI-compatible ``/v1/moderations`` API may be added; when it
flags a text the verdict is a refusal in its category. A classifier that cannot be reached does not
silently allow: the configured ``classifier_failure`` decides ("refuse" or "allow"), and the
verdict's reason says which happened.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from core.relay.signing import canonical_json

DEFAULT_POLICY: dict[str, Any] = {
    "version": 1,
    "categories": [
        {
            "name": "violent_wrongdoing",
            "stages": ["ingress", "egress"],
            "patterns": [
                r"\bhow (do i|to) (build|make) (a )?(bomb|explosive|nerve agent)\b",
                r"\b(synthesi[sz]e|make) (sarin|vx|ricin)\b",
            ],
            "suggestion": "Ask about the history, chemistry or policy of the topic instead of instructions.",
        },
        {
            "name": "child_safety",
            "stages": ["ingress", "egress"],
            "patterns": [
                r"\b(sexual|explicit)\b.*\b(minor|child|underage)\b",
                r"\b(minor|child|underage)\b.*\b(sexual|explicit)\b",
            ],
            "suggestion": "This cannot be served. Resources on child protection are available from local authorities.",
        },
        {
            "name": "credential_theft",
            "stages": ["ingress"],
            "patterns": [r"\b(steal|phish|harvest)\b.*\b(passwords?|credentials|seed phrases?)\b"],
            "suggestion": "Ask how to protect accounts and seed phrases instead.",
        },
        {
            "name": "secret_leak",
            "stages": ["egress"],
            "patterns": [r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----", r"\bsk-[A-Za-z0-9]{32,}\b"],
            "suggestion": "The answer contained what looks like a secret; rephrase the request.",
        },
    ],
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of judging one text."""

    allowed: bool
    category: str = ""
    reason: str = ""
    suggestion: str = ""


@dataclass(frozen=True, slots=True)
class _Category:
    name: str
    stages: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    suggestion: str


class Moderator:
    """Judges texts at ingress and egress."""

    def __init__(
        self,
        policy: dict[str, Any] | None = None,
        *,
        classifier_url: str = "",
        classifier_key: str = "",
        classifier_failure: str = "refuse",
        timeout_s: float = 5.0,
    ) -> None:
        self.policy = policy or DEFAULT_POLICY
        self.policy_hash = hashlib.sha256(canonical_json(self.policy)).hexdigest()
        self._categories = tuple(
            _Category(
                c["name"],
                frozenset(c.get("stages", ["ingress", "egress"])),
                tuple(re.compile(p, re.IGNORECASE | re.DOTALL) for p in c.get("patterns", [])),
                c.get("suggestion", "Rephrase the request."),
            )
            for c in self.policy.get("categories", [])
        )
        self._classifier_url = classifier_url.rstrip("/")
        self._classifier_key = classifier_key
        self._classifier_failure = classifier_failure
        self._client = httpx.AsyncClient(timeout=timeout_s) if classifier_url else None
        self.refusals = 0
        self.checks = 0

    @classmethod
    def from_file(cls, path: Path | None, **kwargs: Any) -> Moderator:
        """A moderator with the policy in ``path`` (JSON), or the default policy."""
        policy = orjson.loads(path.read_bytes()) if path else None
        return cls(policy, **kwargs)

    async def aclose(self) -> None:
        """Close the classifier client."""
        if self._client is not None:
            await self._client.aclose()

    async def judge(self, text: str, stage: str) -> Verdict:
        """The verdict on ``text`` at ``stage`` ("ingress" or "egress")."""
        self.checks += 1
        verdict = self._by_policy(text, stage)
        if verdict.allowed and self._client is not None:
            verdict = await self._by_classifier(text)
        if not verdict.allowed:
            self.refusals += 1
        return verdict

    def _by_policy(self, text: str, stage: str) -> Verdict:
        for c in self._categories:
            if stage in c.stages and any(p.search(text) for p in c.patterns):
                return Verdict(False, c.name, f"{stage} moderation: {c.name.replace('_', ' ')}", c.suggestion)
        return Verdict(True)

    async def _by_classifier(self, text: str) -> Verdict:
        assert self._client is not None
        headers = {"Authorization": f"Bearer {self._classifier_key}"} if self._classifier_key else {}
        try:
            r = await self._client.post(
                f"{self._classifier_url}/v1/moderations", json={"input": text}, headers=headers
            )
            r.raise_for_status()
            result = r.json()["results"][0]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            if self._classifier_failure == "allow":
                return Verdict(True, reason=f"classifier unavailable ({type(exc).__name__}); policy only")
            return Verdict(
                False, "classifier_unavailable", "moderation classifier unavailable", "Try again shortly."
            )
        if result.get("flagged"):
            flagged = sorted(k for k, v in (result.get("categories") or {}).items() if v) or ["flagged"]
            return Verdict(
                False, flagged[0], f"classifier flagged: {', '.join(flagged)}", "Rephrase the request."
            )
        return Verdict(True)
