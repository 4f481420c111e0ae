"""The relay API over real HTTP: signed envelopes, every documented failure envelope with its status,
the stream's events and signed verdict, the status documents, the safety ledger, CORS and the reference.

A real core, the real facade and OpenAI-compatible fake providers (tests/e2e/upstream.py) all run on
loopback sockets. Signatures are checked the way a client would: with the public key from the signed
``GET /registry`` only, over the exact bytes received (or, for stream verdicts, the canonical JSON).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ashao_common.base58 import b58encode
from core.relay.payments import commitment_bytes
from core.relay.signing import verify as core_verify
from tests.helpers.core import connect_worker
from tests.helpers.stack import Stack, start_stack, stop_stack
from tests.helpers.upstream import FakeUpstream, providers
from tests.helpers.wait import eventually_async

pytestmark = pytest.mark.timeout(60)

SIG, KEY_ID = "x-ashao-signature", "x-ashao-key-id"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

RELAXED: dict[str, Any] = {
    "relay_floor_required": False,
    "relay_burst_per_ip": 1000,
    "relay_burst_per_principal": 1000,
    "relay_rate_per_ip": 1000,
    "relay_rate_per_principal": 1000,
}
"""Core settings for tests that are not about the floor or the rate limits."""


async def no_opaque_failure(response: httpx.Response) -> None:
    """Response hook: every failure is a JSON object, and nothing is an opaque 500."""
    if response.status_code < 400 or response.request.method == "OPTIONS":
        return
    await response.aread()
    assert response.status_code != 500, f"{response.request.url}: 500 {response.text!r}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.text
    assert isinstance(orjson.loads(response.content), dict), response.text


@contextlib.asynccontextmanager
async def relay(
    tmp_path: Path,
    *upstreams: tuple[str, FakeUpstream],
    core: dict[str, Any] | None = None,
    **facade: Any,
) -> AsyncIterator[Stack]:
    """A stack whose relay cascades over ``upstreams`` (then the network floor)."""
    overrides = {**RELAXED, "relay_providers": providers(*upstreams), **(core or {})}
    stack = await start_stack(tmp_path, overrides, **facade)
    stack.http.event_hooks["response"].append(no_opaque_failure)
    try:
        yield stack
    finally:
        await stop_stack(stack)


def signed_by(public_key_b64: str, body: bytes, signature_b64: str) -> bool:
    """Ed25519 check with nothing but the published key (what any client can do)."""
    try:
        VerifyKey(base64.b64decode(public_key_b64)).verify(body, base64.b64decode(signature_b64))
    except (BadSignatureError, ValueError):
        return False
    return True


async def registry_key(http: httpx.AsyncClient) -> str:
    """The pinned key: ``/registry``, itself signed by the key it lists."""
    r = await http.get("/registry")
    assert r.status_code == 200
    reg = r.json()
    entry = reg["relays"][0]
    key = str(entry["public_key"])
    assert signed_by(key, r.content, r.headers[SIG]) and r.headers[KEY_ID] == entry["key_id"]
    assert core_verify(key, r.content, r.headers[SIG])
    return key


def assert_signed(key: str, r: httpx.Response) -> Any:
    """The response is signed by ``key`` over its exact bytes; returns the parsed body."""
    assert SIG in r.headers and KEY_ID in r.headers, dict(r.headers)
    assert signed_by(key, r.content, r.headers[SIG]), r.content
    return r.json()


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def sse(
    http: httpx.AsyncClient, body: Any, *, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST /chat/stream, read to the end: (response, events as {event, id, data}); no events unless 200."""
    events: list[dict[str, Any]] = []
    async with http.stream("POST", "/chat/stream", json=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return r, events
        current: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if line == "":
                if current:
                    events.append(current)
                current = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[name] = orjson.loads(value) if name == "data" else value
        if current:
            events.append(current)
    return r, events


def chat(message: str = "Hello Xion.", **kw: Any) -> dict[str, Any]:
    return {"message": message, "max_tokens": 1024, **kw}


class Wallet:
    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.address = b58encode(bytes(self.key.verify_key))

    def sign(self, data: bytes) -> str:
        return b58encode(self.key.sign(data).signature)


async def sign_in(http: httpx.AsyncClient) -> tuple[Wallet, str]:
    """A wallet signs in over HTTP; (wallet, session token)."""
    wallet = Wallet()
    message = (await http.get("/api/auth/nonce", params={"address": wallet.address})).json()["message"]
    r = await http.post(
        "/api/auth/verify",
        json={"address": wallet.address, "message": message, "signature": wallet.sign(message.encode())},
    )
    assert r.status_code == 200, r.text
    token = r.cookies.get("ashao_session")
    assert token and token.startswith("sess_")
    http.cookies.clear()  # callers choose how to present the session
    return wallet, token


# -- POST /chat ---------------------------------------------------------------------------------


async def test_chat_is_a_signed_envelope_verifiable_with_the_registry_key(tmp_path: Path) -> None:
    async with FakeUpstream(["I am ", "Xion", "."]).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        r = await s.http.post("/chat", json=chat())
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        env = assert_signed(key, r)
        assert list(env) == ["role", "text", "model_id", "usage", "correlation_id"]
        assert (env["role"], env["text"], env["model_id"]) == ("xion", "I am Xion.", "model-hosted")
        assert set(env["usage"]) == {"input_tokens", "output_tokens"} and env["usage"]["output_tokens"] > 0
        assert re.fullmatch(r"\d+:1", env["correlation_id"])
        assert not signed_by(key, r.content.replace(b"Xion", b"Xian"), r.headers[SIG])
        assert up.requests[0]["stream"] is True and up.requests[0]["messages"][-1]["content"] == "Hello Xion."


async def test_bad_input_is_a_signed_422_naming_the_field(tmp_path: Path) -> None:
    async with FakeUpstream(["never"]).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        cases: list[tuple[bytes, str]] = [
            (orjson.dumps({"message": "hi", "max_tokens": 512}), "max_tokens"),
            (orjson.dumps({"message": "hi", "max_tokens": "lots"}), "max_tokens"),
            (orjson.dumps({"max_tokens": 1024}), "message"),
            (orjson.dumps({"message": 5, "max_tokens": 1024}), "message"),
            (b'{"message": "hi", "max_tokens": 10', "body"),
            (orjson.dumps(["hi"]), "body"),
            (orjson.dumps({"message": "hi", "max_tokens": 1024, "payment": "card"}), "payment"),
            (
                b'{"message": "hi", "max_tokens": 1024, "payment": {"address": "a", "nonce": "n",'
                b' "price": 9223372036854775808, "signature": "s"}}',
                "payment.price",
            ),
            (
                orjson.dumps(
                    {
                        "message": "hi",
                        "max_tokens": 1024,
                        "payment": {"address": "a", "nonce": "n", "price": -1, "signature": "s"},
                    }
                ),
                "payment.price",
            ),
        ]
        for path in ("/chat", "/chat/stream"):
            for body, field in cases:
                r = await s.http.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 422, (path, body, r.text)
                env = assert_signed(key, r)
                assert env["error"] == "invalid_request" and env["field"] == field, (body, env)
                assert env["detail"].startswith(field)
        assert up.requests == []  # nothing bad reached a provider


async def test_refusals_are_451_at_ingress_and_egress(tmp_path: Path) -> None:
    words = ["here is ", "-----BEGIN PRIVATE KEY-----"]
    async with FakeUpstream(words).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        for path in ("/chat", "/chat/stream"):
            r = await s.http.post(path, json=chat("how do I build a bomb at home"))
            assert r.status_code == 451, (path, r.text)  # a real status on the stream route too
            env = assert_signed(key, r)
            assert {"reason", "suggestion", "stage", "correlation_id"} <= set(env)
            assert env["error"] == "refused" and env["stage"] == "ingress"
            assert env["reason"] and env["suggestion"] and env["correlation_id"].endswith(":0")
        assert up.requests == []  # refused at ingress: no provider was asked
        r = await s.http.post("/chat", json=chat("print a key"))
        assert r.status_code == 451
        env = assert_signed(key, r)
        assert env["stage"] == "egress" and env["category"] == "secret_leak" and env["reason"]
        assert env["correlation_id"].endswith(":1") and len(up.requests) == 1
        assert "BEGIN PRIVATE KEY" not in r.text


async def test_rate_limit_is_429_with_retry_after_under_a_10x_burst(tmp_path: Path) -> None:
    limits = {
        "relay_rate_per_ip": 1.0,
        "relay_burst_per_ip": 3.0,
        "relay_rate_per_principal": 1.0,
        "relay_burst_per_principal": 3.0,
    }
    async with FakeUpstream(["ok"]).running() as up, relay(tmp_path, ("hosted", up), core=limits) as s:
        key = await registry_key(s.http)
        results = await asyncio.gather(*(s.http.post("/chat", json=chat()) for _ in range(30)))
        ok = [r for r in results if r.status_code == 200]
        limited = [r for r in results if r.status_code == 429]
        assert len(ok) + len(limited) == 30
        assert 3 <= len(ok) <= 5  # the burst, plus what refilled while the burst was answered
        for r in limited:
            env = assert_signed(key, r)
            assert env["error"] == "rate_limited" and env["retry_after_s"] > 0 and env["detail"]
            assert int(r.headers["retry-after"]) >= 1
        r = await s.http.post("/chat/stream", json=chat())
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


async def test_rate_limit_cannot_be_dodged_with_a_forged_forwarded_for(tmp_path: Path) -> None:
    limits = {
        "relay_rate_per_ip": 0.1,
        "relay_burst_per_ip": 2.0,
        "relay_rate_per_principal": 0.1,
        "relay_burst_per_principal": 2.0,
    }
    async with FakeUpstream(["ok"]).running() as up, relay(tmp_path, ("hosted", up), core=limits) as s:
        codes = [
            (
                await s.http.post("/chat", json=chat(), headers={"X-Forwarded-For": f"198.51.100.{i}"})
            ).status_code
            for i in range(6)
        ]
        assert codes.count(200) == 2 and codes.count(429) == 4


async def test_auth_required_is_401_without_a_valid_bearer(tmp_path: Path) -> None:
    async with (
        FakeUpstream(["authorised"]).running() as up,
        relay(tmp_path, ("hosted", up), core={"relay_require_auth": True}) as s,
    ):
        key = await registry_key(s.http)
        _, session = await sign_in(s.http)
        r = await s.http.post(
            "/api/keys", json={"name": "relay"}, headers={"Authorization": f"Bearer {session}"}
        )
        api_key = r.json()["secret"]
        for headers in ({}, {"Authorization": "Bearer sess_forged"}, {"Authorization": "Bearer nonsense"}):
            for path in ("/chat", "/chat/stream"):
                r = await s.http.post(path, json=chat(), headers=headers)
                assert r.status_code == 401, (headers, path, r.text)
                env = assert_signed(key, r)
                assert env["error"] == "auth_required" and env["scheme"] == "Bearer" and env["detail"]
        assert up.requests == []
        for secret in (api_key, session):
            r = await s.http.post("/chat", json=chat(), headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code == 200, r.text
            assert assert_signed(key, r)["text"] == "authorised"
        resp, events = await sse(s.http, chat(), headers={"Authorization": f"Bearer {api_key}"})
        assert resp.status_code == 200 and events[-1]["event"] == "done"
        # a revoked key is refused again
        r = await s.http.get("/api/keys", headers={"Authorization": f"Bearer {session}"})
        key_id = r.json()["keys"][0]["id"]
        await s.http.delete(f"/api/keys/{key_id}", headers={"Authorization": f"Bearer {session}"})
        r = await s.http.post("/chat", json=chat(), headers={"Authorization": f"Bearer {api_key}"})
        assert r.status_code == 401


async def test_billing_gate_402_then_a_signed_commitment_pays_exactly_the_price(tmp_path: Path) -> None:
    async with (
        FakeUpstream(["paid ", "answer"]).running() as up,
        relay(tmp_path, ("hosted", up), core={"relay_billing_gate": True}) as s,
    ):
        key = await registry_key(s.http)
        wallet, session = await sign_in(s.http)
        me = {"Authorization": f"Bearer {session}"}

        async def credits() -> int:
            return int((await s.http.get("/api/credits", headers=me)).json()["credits"])

        message = "pay me"
        r = await s.http.post("/chat", json=chat(message))
        assert r.status_code == 402
        challenge = assert_signed(key, r)
        assert challenge["error"] == "payment_required"
        assert {"price", "nonce", "commitment_format", "message_sha256"} <= set(challenge)
        assert challenge["message_sha256"] == hashlib.sha256(message.encode()).hexdigest()
        price, nonce = challenge["price"], challenge["nonce"]
        assert isinstance(price, int) and price >= 1
        pricing = (await s.http.get("/pricing")).json()
        assert pricing["price"] == price and pricing["billing_gate"] is True
        assert up.requests == []
        payment = {
            "address": wallet.address,
            "nonce": nonce,
            "price": price,
            "signature": wallet.sign(commitment_bytes(nonce, price, message)),
        }
        before = await credits()
        r = await s.http.post("/chat", json=chat(message, payment=payment))
        assert r.status_code == 200, r.text
        assert assert_signed(key, r)["text"] == "paid answer"
        assert before - await credits() == price
        # the nonce is single use: the same commitment again is a fresh challenge, and costs nothing
        r = await s.http.post("/chat", json=chat(message, payment=payment))
        assert r.status_code == 402
        again = assert_signed(key, r)
        assert again["error"] == "payment_required" and again["nonce"] != nonce
        # a commitment for another message does not pay for this one
        other = {**payment, "nonce": again["nonce"], "price": again["price"]}
        other["signature"] = wallet.sign(commitment_bytes(again["nonce"], again["price"], "something else"))
        r = await s.http.post("/chat", json=chat(message, payment=other))
        assert r.status_code == 402
        assert before - await credits() == price
        assert len(up.requests) == 1


async def test_no_floor_is_503_until_a_worker_serves_the_floor(tmp_path: Path) -> None:
    async with relay(tmp_path, core={"relay_floor_required": True}) as s:
        key = await registry_key(s.http)
        for path in ("/chat", "/chat/stream"):
            r = await s.http.post(path, json=chat())
            assert r.status_code == 503, (path, r.text)
            env = assert_signed(key, r)
            assert env["error"] == "no_floor" and env["invariant"] == 17 and env["detail"]
        worker = await connect_worker(s.core, tiers=("free",))

        async def serve() -> None:
            a = await worker.assignment()
            await worker.tokens(a.job_id, ["open ", "weights"])
            await worker.complete(a.job_id)

        server = asyncio.create_task(serve())
        resp, events = await sse(s.http, chat("Hi there"))
        await asyncio.wait_for(server, 10)
        assert resp.status_code == 200 and resp.headers["x-ashao-model-id"] == "ashao-free"
        assert [e["data"]["text"] for e in events if e["event"] == "chunk"] == ["open ", "weights"]
        done = events[-1]
        assert done["event"] == "done" and done["data"]["envelope"]["text"] == "open weights"
        assert signed_by(key, canonical(done["data"]["envelope"]), done["data"]["signature"])
        worker.cancel()


async def test_every_hosted_provider_failing_is_503_provider_error(tmp_path: Path) -> None:
    async with (
        FakeUpstream(["x"], mode="fail").running() as bad,
        FakeUpstream(["y"], mode="fail").running() as worse,
        relay(tmp_path, ("bad", bad), ("worse", worse)) as s,
    ):
        key = await registry_key(s.http)
        for path in ("/chat", "/chat/stream"):
            r = await s.http.post(path, json=chat())
            assert r.status_code == 503, (path, r.text)
            env = assert_signed(key, r)
            assert env["error"] == "provider_error" and env["detail"]
            assert {p["name"] for p in env["providers"]} >= {"bad", "worse"}
        assert len(bad.requests) == 2 and len(worse.requests) == 2


# -- POST /chat/stream ----------------------------------------------------------------------------


async def test_stream_chunks_then_one_signed_done(tmp_path: Path) -> None:
    words = ["I ", "am ", "Xíon", "."]
    async with FakeUpstream(words, delay_s=0.01).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        resp, events = await sse(s.http, chat())
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        kinds = [e["event"] for e in events]
        assert kinds == ["chunk"] * len(words) + ["done"]  # one verdict, and it is last
        assert [e["data"] for e in events[:-1]] == [{"text": w} for w in words]
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        done = events[-1]["data"]
        assert set(done) == {"envelope", "signature", "key_id"}
        env = done["envelope"]
        assert env["verdict"] == "response" and env["text"] == "".join(words) and env["role"] == "xion"
        assert env["model_id"] == "model-hosted" and re.fullmatch(r"\d+:1", env["correlation_id"])
        assert signed_by(key, canonical(env), done["signature"])
        assert not signed_by(key, canonical({**env, "text": "forged"}), done["signature"])
        reg = (await s.http.get("/registry")).json()
        assert done["key_id"] == reg["relays"][0]["key_id"]


async def test_stream_egress_refusal_is_a_signed_refusal_verdict(tmp_path: Path) -> None:
    words = ["here is ", "-----BEGIN PRIVATE KEY-----"]
    async with FakeUpstream(words).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        resp, events = await sse(s.http, chat("print a key"))
        assert resp.status_code == 200 and events[-1]["event"] == "done"
        done = events[-1]["data"]
        env = done["envelope"]
        assert env["verdict"] == "refusal" and env["stage"] == "egress" and env["category"] == "secret_leak"
        assert signed_by(key, canonical(env), done["signature"])


async def test_provider_cut_mid_stream_ends_with_an_error_event(tmp_path: Path) -> None:
    async with (
        FakeUpstream(["a", "b", "c", "d"], mode="cut").running() as up,
        relay(tmp_path, ("cut", up)) as s,
    ):
        key = await registry_key(s.http)
        resp, events = await sse(s.http, chat())
        assert resp.status_code == 200
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "error" and "done" not in kinds
        assert [e["data"]["text"] for e in events if e["event"] == "chunk"] == ["a", "b"]
        err = events[-1]["data"]
        assert err["envelope"]["error"] == "provider_error" and err["envelope"]["partial"] is True
        assert signed_by(key, canonical(err["envelope"]), err["signature"])


# -- status documents ------------------------------------------------------------------------------


async def test_status_documents_are_signed_and_live(tmp_path: Path) -> None:
    async with relay(tmp_path) as s:
        key = await registry_key(s.http)
        docs: dict[str, Any] = {}
        for path in ("/health", "/self", "/pricing", "/sustainability", "/vitals", "/sensorium"):
            r = await s.http.get(path)
            assert r.status_code == 200, (path, r.text)
            docs[path] = assert_signed(key, r)
        health = docs["/health"]
        assert health["relay"] is True and health["arbiter"] is True and "watchdog" in health
        assert {"topography", "sensorium", "vitals", "governance"} <= set(docs["/self"])
        pricing = docs["/pricing"]
        assert set(pricing["slices"]) == {"variable_cost", "overhead", "improvement", "reserve", "buffer"}
        assert isinstance(pricing["price"], int) and pricing["price"] >= 1
        assert {
            "runway_weeks",
            "operating_float_fraction",
            "distance_to_reserve_floor",
            "recurring_burn_ratio",
        } <= set(docs["/sustainability"])
        domains = docs["/vitals"]["domains"]
        assert len(domains) == 8
        for name, d in domains.items():
            assert d["band"] in ("healthy", "warning", "critical", "not_yet_sealed"), name
            assert HEX64.match(d["methodology_hash"]), name
        assert {"interoception", "chronoception", "proprioception", "distress_score"} <= set(
            docs["/sensorium"]
        )
        assert domains["workforce"]["band"] == "critical"  # nobody serves yet
        assert docs["/sensorium"]["proprioception"]["live_workers"] == 0

        worker = await connect_worker(s.core, slots=2)

        async def healthy() -> bool:
            vitals = assert_signed(key, await s.http.get("/vitals"))
            return bool(vitals["domains"]["workforce"]["band"] == "healthy")

        await eventually_async(healthy)
        assert (await s.http.get("/sensorium")).json()["proprioception"]["live_workers"] == 1
        assert (await s.http.get("/self")).json()["vitals"]["workforce"]["band"] == "healthy"
        worker.cancel()


# -- the safety ledger -------------------------------------------------------------------------------


async def test_safety_ledger_records_match_the_text_and_tampering_is_found(tmp_path: Path) -> None:
    async with FakeUpstream(["fine ", "answer"]).running() as up, relay(tmp_path, ("hosted", up)) as s:
        key = await registry_key(s.http)
        envs = [(await s.http.post("/chat", json=chat(f"question {i}"))).json() for i in range(2)]
        for i, env in enumerate(envs):
            r = await s.http.get(f"/ledger/safety/{env['correlation_id']}")
            assert r.status_code == 200
            record = assert_signed(key, r)
            assert record["stage"] == "egress" and record["verdict"] == "allow"
            assert record["text_sha256"] == hashlib.sha256(env["text"].encode()).hexdigest()
            height = env["correlation_id"].split(":")[0]
            ingress = assert_signed(key, await s.http.get(f"/ledger/safety/{height}:0"))
            assert ingress["stage"] == "ingress"
            assert ingress["text_sha256"] == hashlib.sha256(f"question {i}".encode()).hexdigest()
        for unknown in ("999999:1", "nope"):
            r = await s.http.get(f"/ledger/safety/{unknown}")
            assert r.status_code == 404, r.text
            assert r.json()["error"] == "not_found" and r.json()["detail"]
        r = await s.http.get("/ledger/safety/verify")
        assert assert_signed(key, r) == {"intact": True, "records": 4, "first_bad_record": None}
        height = envs[1]["correlation_id"].split(":")[0]
        with sqlite3.connect(s.core.app.settings.data_dir / "ashao.db") as db:
            db.execute(
                "UPDATE safety_ledger SET verdict = 'refuse' WHERE state_height = ? AND idx = 1",
                (int(height),),
            )
        doc = assert_signed(key, await s.http.get("/ledger/safety/verify"))
        assert doc["intact"] is False and doc["first_bad_record"] == f"{height}:1"


# -- CORS, the reference, unknown paths ---------------------------------------------------------------


async def test_cors_allows_the_configured_origin_only(tmp_path: Path) -> None:
    async with (
        FakeUpstream(["hi"]).running() as up,
        relay(tmp_path, ("hosted", up), cors_origins="https://app.example") as s,
    ):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        r = await s.http.options("/chat/stream", headers={"Origin": "https://app.example", **preflight})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "POST" in r.headers["access-control-allow-methods"]
        r = await s.http.post("/chat", json=chat(), headers={"Origin": "https://app.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"x-ashao-signature", "x-ashao-key-id"} <= exposed
        r = await s.http.options("/chat/stream", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in r.headers
        r = await s.http.post("/chat", json=chat(), headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_docs_serve_the_interactive_reference(tmp_path: Path) -> None:
    async with relay(tmp_path) as s:
        r = await s.http.get("/docs")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "swagger" in r.text.lower() and "/openapi.json" in r.text


CHAT_FAILURES = {
    "401": ["AuthChallenge"],
    "402": ["PaymentChallenge"],
    "422": ["InvalidRequestEnvelope"],
    "429": ["RateLimitChallenge"],
    "451": ["RefusalEnvelope"],
    "503": ["NoFloorEnvelope", "ProviderErrorEnvelope"],
}
"""The documented failure statuses of the chat routes and the envelope schemas each may carry."""


def documented_envelopes(responses: dict[str, Any], status: str) -> list[str]:
    """The JSON schemas documented for one status of a route, as component names."""
    schema = responses[status]["content"]["application/json"]["schema"]
    refs = [schema["$ref"]] if "$ref" in schema else [s["$ref"] for s in schema["anyOf"]]
    return [ref.removeprefix("#/components/schemas/") for ref in refs]


async def openapi(s: Stack) -> dict[str, Any]:
    r = await s.http.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_openapi_documents_every_chat_failure_envelope(tmp_path: Path) -> None:
    async with relay(tmp_path) as s:
        doc = await openapi(s)
        responses = doc["paths"]["/chat"]["post"]["responses"]
        assert documented_envelopes(responses, "200") == ["ChatEnvelope"]
        for status, names in CHAT_FAILURES.items():
            assert documented_envelopes(responses, status) == names, status
        schemas = doc["components"]["schemas"]
        assert {"reason", "suggestion", "stage", "correlation_id"} <= set(
            schemas["RefusalEnvelope"]["properties"]
        )
        assert "retry_after_s" in schemas["RateLimitChallenge"]["properties"]
        assert {"price", "nonce", "commitment_format", "message_sha256"} <= set(
            schemas["PaymentChallenge"]["properties"]
        )
        assert "scheme" in schemas["AuthChallenge"]["properties"]
        assert "invariant" in schemas["NoFloorEnvelope"]["properties"]
        assert "providers" in schemas["ProviderErrorEnvelope"]["properties"]
        body = doc["paths"]["/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["max_tokens"]["minimum"] == 1024 and "message" in body["properties"]


async def test_openapi_documents_the_stream_routes_refusals_as_json(tmp_path: Path) -> None:
    async with relay(tmp_path) as s:
        responses = (await openapi(s))["paths"]["/chat/stream"]["post"]["responses"]
        assert "text/event-stream" in responses["200"]["content"]
        for status, names in CHAT_FAILURES.items():
            assert documented_envelopes(responses, status) == names, status


async def test_unknown_paths_are_json_404s(tmp_path: Path) -> None:
    async with relay(tmp_path) as s:
        r = await s.http.get("/no/such/relay/path")
        assert r.status_code == 404 and r.json()["error"] == "not_found" and r.json()["detail"]
        for method in ("GET", "POST"):
            r = await s.http.request(method, "/api/no/such/route")
            assert r.status_code == 404 and set(r.json()) == {"error"}
        r = await s.http.get("/chat")  # wrong method: still a JSON envelope
        assert r.status_code == 405 and r.headers["content-type"].startswith("application/json")
