"""Nothing a client can send gets an opaque 500: numbers too big for their wire type, digits that are
not ASCII, headers gRPC metadata cannot carry, text that is not Unicode, JSON Python reads but no
other parser does. Each is answered in the surface's documented shape, and none leaves state behind
that breaks later requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers.stack import start_again, start_stack, stop_core_keeping_port, stop_stack
from tests.helpers.wait import eventually

pytestmark = pytest.mark.timeout(60)


async def never_opaque(response: httpx.Response) -> None:
    """Response hook: a failure is a JSON object, and never a 500."""
    if response.status_code < 400:
        return
    await response.aread()
    assert response.status_code != 500, f"{response.request.url}: 500 {response.text!r}"
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert isinstance(orjson.loads(response.content), dict), response.text


def raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


async def test_hostile_input_gets_a_documented_answer_and_breaks_nothing(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, trust_forwarded=True)
    s.http.event_hooks["response"].append(never_opaque)
    try:
        http, mux = s.http, s.facade.core_client.mux
        job = (await http.post("/api/chat/send", json={"tier": "free", "content": "x"})).json()["jobId"]
        stream = f"/api/chat/stream?jobId={job}"
        for headers, query in (
            ({"Last-Event-ID": "99999999999999999999999"}, ""),  # past uint64
            ({"Last-Event-ID": "9" * 5000}, ""),  # past what int() parses
            ({"Last-Event-ID": b"\xb2"}, ""),  # "²" in Latin-1: a digit, to str.isdigit
            ({}, "&lastEventId=%EF%BC%91"),  # a fullwidth "1"
        ):
            r = await http.get(stream + query, headers=headers)
            assert r.status_code == 400 and r.json()["error"].startswith("Last-Event-ID: "), r.text
        primed = len(s.facade.core_client.primer)  # (the send's own, for the stream its sender opens)
        assert len(mux) == primed  # nothing half-registered...
        app = await stop_core_keeping_port(s)  # ...that a new subscription stream would choke on
        await eventually(lambda: not mux.connected)
        await start_again(s, app)
        await eventually(lambda: mux.connected)
        async with http.stream("GET", stream) as r:
            assert r.status_code == 200

        latin1 = "Bearer \xe9t\xe9".encode("latin-1")  # bytes an HTTP header may carry, gRPC metadata not
        for method, path, body in (
            ("GET", "/api/credits", None),
            ("POST", "/api/chat/send", {"tier": "pro", "content": "x"}),
            ("GET", f"/api/jobs/{job}", None),
            ("POST", "/chat", {"message": "hi", "max_tokens": 1024}),
        ):
            r = await http.request(method, path, json=body, headers={"Authorization": latin1})
            # a bad credential, or none: never a failed call (503 is the relay's floor, unserved here)
            assert r.status_code in (200, 401, 503), (path, r.status_code, r.text)
        r = await http.get("/api/credits", headers={"Cookie": b"ashao_session=s\xe9ss"})
        assert r.status_code == 401
        r = await http.get("/api/stats", headers={"X-Forwarded-For": b"\xe9vil, 10.0.0.1"})
        assert r.status_code == 200
        async with http.stream("GET", stream, headers={"Authorization": latin1}) as r:
            assert r.status_code == 401  # as any credential the core does not know

        for path, kw, field in (
            ("/api/treasury?limit=99999999999999999999", {}, "limit"),
            ("/api/treasury?limit=-1", {}, "limit"),
            ("/api/worker/register", {"json": {"slots": -1}}, "slots"),
            ("/api/worker/register", {"json": {"slots": 2**40}}, "slots"),
            ("/api/staking/stake", {"json": {"amount": 2**70}}, "amount"),
            ("/api/worker/heartbeat", raw(b'{"tokensPerSec": NaN}'), "tokensPerSec"),
            ("/api/chat/send", raw(b'{"tier": "free", "content": "\\ud800"}'), "content"),
            ("/api/chat/send", raw(b'{"tier": "free", "content": "x", "n": ' + b"9" * 5000 + b"}"), "body"),
            ("/api/chat/send", raw(b'{"tier": "free", "content": "\xff"}'), "body"),
        ):
            method = "GET" if path.startswith("/api/treasury") else "POST"
            r = await http.request(method, path, **kw)
            assert r.status_code == 400 and r.json()["error"].startswith(f"{field}: "), (path, r.text)
    finally:
        await stop_stack(s)
