"""The relay's status documents (health, vitals, pricing, the signed registry, …), each signed over its
exact body, and safety-ledger records."""

from __future__ import annotations

import time

from core.errors import NotFoundError
from core.relay.payments import COMMITMENT_FORMAT
from core.relay.pipeline import Relay
from core.relay.signing import Signed
from core.relay.vitals import Vitals


class RelayDocuments:
    """The relay's status documents, each signed over its exact body."""

    def __init__(self, *, relay: Relay, vitals: Vitals, endpoint: str) -> None:
        self._relay = relay
        self._vitals = vitals
        self._endpoints = [e.strip() for e in endpoint.split(",") if e.strip()] or [endpoint]
        self._endpoint = self._endpoints[0]
        self._policy_at_start = relay.moderator.policy_hash

    async def get(self, name: str) -> Signed:
        """The document called ``name``."""
        r, v = self._relay, self._vitals
        if name == "health":
            return r.signer.document(await v.health())
        if name == "vitals":
            return r.signer.document(await v.vitals_document())
        if name == "sensorium":
            return r.signer.document(await v.sensorium())
        if name == "sustainability":
            return r.signer.document(await v.sustainability())
        if name == "pricing":
            p = r.prices.current()
            return r.signer.document(
                {
                    "price": p.price,
                    "currency": "credits",
                    "per": "message",
                    "slices": {
                        "variable_cost": round(p.variable_cost, 4),
                        "overhead": round(p.overhead, 4),
                        "improvement": round(p.improvement, 4),
                        "reserve": round(p.reserve, 4),
                        "buffer": round(p.buffer, 4),
                    },
                    "sealed": p.sealed,
                    "measured": {
                        "mean_output_tokens": round(p.mean_output_tokens, 2),
                        "messages_per_week": round(p.messages_per_week, 1),
                    },
                    "billing_gate": r.billing_gate,
                    "commitment_format": COMMITMENT_FORMAT,
                }
            )
        if name == "self":
            return r.signer.document(
                {
                    "topography": {
                        "relay_key_id": r.signer.key_id,
                        "endpoint": self._endpoint,
                        "lineage_drift": r.moderator.policy_hash != self._policy_at_start,
                    },
                    "sensorium": await v.sensorium(),
                    "vitals": (await v.vitals_document())["domains"],
                    "governance": {
                        "policy_hash": r.moderator.policy_hash,
                        "floor_required": r.floor_required,
                        "billing_gate": r.billing_gate,
                        "auth_required": r.require_auth,
                        "persona": r.persona,
                    },
                }
            )
        if name == "registry":
            return r.signer.canonical(
                {
                    "version": 1,
                    "issued_at": int(time.time() * 1000),
                    "relays": [
                        {
                            "endpoint": endpoint,
                            "public_key": r.signer.public_key_b64,
                            "public_key_b58": r.signer.public_key_b58,
                            "key_id": r.signer.key_id,
                        }
                        for endpoint in self._endpoints
                    ],
                }
            )
        if name == "safety_verify":
            intact, checked, first_bad = await r.safety.verify()
            return r.signer.document(
                {"intact": intact, "records": checked, "first_bad_record": first_bad or None}
            )
        raise NotFoundError(
            f"name: no document {name!r}",
            field="name",
            envelope={"error": "not_found", "detail": f"no document {name!r}"},
        )

    async def safety_record(self, correlation_id: str) -> Signed:
        """A safety-ledger record as JSON."""
        rec = await self._relay.safety.get(correlation_id)
        if rec is None:
            raise NotFoundError(
                f"correlation_id: no record {correlation_id!r}",
                field="correlation_id",
                envelope={"error": "not_found", "detail": f"no safety record {correlation_id!r}"},
            )
        return self._relay.signer.document(
            {"correlation_id": rec.correlation_id, **rec.body(), "hash": rec.hash}
        )
