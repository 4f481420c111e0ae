"""Request bodies: checked by the models the routes declare, bad input told in each surface's shape
naming the field, optional bodies optional, and the relay's body forwarded as typed fields when well
formed (as is when not, so the core's 422 stays signed and comes after its auth and rate checks)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.helpers.fakecore import scripted_relay
from tests.helpers.stack import Stack

pytestmark = pytest.mark.timeout(60)


async def test_bad_network_bodies_are_400_naming_the_field(stack: Stack) -> None:
    cases: list[tuple[str, Any, str]] = [
        ("/api/chat/send", {"tier": 5, "content": "x"}, "tier: must be a string"),
        ("/api/chat/send", {"content": "x"}, "tier: required"),
        (
            "/api/chat/send",
            {"tier": "free", "content": "x", "conversationId": 7},
            "conversationId: must be a string",
        ),
        ("/api/chat/send", ["tier", "free"], "body: must be a JSON object"),
        ("/api/chat/send", None, "body: required"),
        ("/api/staking/stake", {"amount": "10"}, "amount: must be an integer"),
        ("/api/staking/stake", {"amount": 1.5}, "amount: must be an integer"),
        ("/api/staking/stake", {"amount": True}, "amount: must be an integer"),
        ("/api/worker/register", {"tiers": ["free", 3]}, "tiers[1]: must be a string"),
        ("/api/worker/register", {"slots": "2"}, "slots: must be an integer"),
        ("/api/worker/token", {"jobId": "job_x", "token": "t", "index": -1}, "index: must not be negative"),
        ("/api/worker/token", {"jobId": "job_x"}, "token: required (or tokens)"),
        ("/api/worker/fail", {"jobId": "job_x", "retryable": "no"}, "retryable: must be true or false"),
        (
            "/api/images/generate",
            {"prompt": "p", "style": "Anime", "aspect": "Square", "nsfw": 0},
            "nsfw: must be true or false",
        ),
    ]
    for path, body, error in cases:
        r = await stack.http.post(path, json=body)
        assert (r.status_code, r.json()) == (400, {"error": error}), (path, body, r.text)
    r = await stack.http.post(
        "/api/chat/send", content=b'{"tier": "free",', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"].startswith("body: malformed JSON")
    assert (await stack.http.get("/api/stats")).json()["queueDepth"] == 0  # nothing was queued


async def test_optional_bodies_may_be_empty_and_any_content_type_is_read_as_json(stack: Stack) -> None:
    r = await stack.http.post("/api/worker/register")  # no body at all: no join token either
    assert r.status_code == 401 and "join token" in r.json()["error"]
    join = await stack.core.join_token()
    r = await stack.http.post("/api/worker/register", json={"joinToken": join})
    assert r.status_code == 200 and r.json()["workerId"].startswith("wrk_")

    worker = {"Authorization": f"Bearer {r.json()['workerToken']}"}
    for path in ("/api/worker/claim", "/api/worker/heartbeat"):
        r = await stack.http.post(path, headers=worker)
        assert r.status_code == 200, (path, r.text)
    r = await stack.http.post("/api/keys")
    assert r.status_code == 401  # optional body, so the answer is about who is asking
    # `curl -d` labels its body application/x-www-form-urlencoded; the body is JSON all the same
    r = await stack.http.post(
        "/api/chat/send",
        content=orjson.dumps({"tier": "free", "content": "from curl"}),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and r.json()["jobId"].startswith("job_")


async def test_the_relay_forwards_a_well_formed_body_as_typed_fields_and_a_malformed_one_as_is() -> None:
    async with scripted_relay() as (core, http):
        payment = {"address": "addr", "nonce": "n1", "price": 3, "signature": "sig"}
        r = await http.post("/chat", json={"message": "hi", "max_tokens": 2048, "payment": payment, "x": 1})
        assert r.status_code == 200
        sent = core.requests[-1]
        assert sent.json_body == b"" and sent.HasField("prompt")
        assert (sent.prompt.message, sent.prompt.max_tokens) == ("hi", 2048)
        p = sent.prompt.payment
        assert (p.address, p.nonce, p.price, p.signature) == ("addr", "n1", 3, "sig")
        r = await http.post("/chat", json={"message": "defaults"})
        assert core.requests[-1].prompt.max_tokens == 1024
        for raw in (
            b'{"message": "hi", "max_tokens": "lots"}',
            b'{"message": "hi", "max_tokens": 512}',
            b'{"message": 5}',
            b'{"message": "\\ud800"}',
            b'{"message": "hi", "max_tokens": 99999999999999999999}',
            b'{"message": "hi", "payment": "card"}',
            b"[1]",
            b"{",
            b"",
        ):
            r = await http.post("/chat", content=raw, headers={"content-type": "application/json"})
            sent = core.requests[-1]
            assert sent.json_body == raw and not sent.HasField("prompt"), raw  # the core judges it
