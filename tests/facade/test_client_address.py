"""The facade names each end user to the core, as its trusted relay, on every call it makes for them;
and the address it names is one a client cannot choose: the peer's, or behind a trusted proxy the
address that proxy saw (never a hop the client wrote into X-Forwarded-For itself)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.core import core_settings, start_core, stop_core
from tests.helpers.grpcproxy import recording_proxy
from tests.helpers.stack import Facade, facade_settings, start_stack, stop_stack

pytestmark = pytest.mark.timeout(60)

VALID: dict[str, Any] = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": []}
SHARED_STREAMS = ("/api/chat/send", "/api/chat/stream", "/v1/chat/completions")  # on the facade's own streams
PROXY_SAW = "203.0.113.7"
FORWARDED = {"X-Forwarded-For": f"198.51.100.9, {PROXY_SAW}"}  # the client's claim, then the proxy's


def minimal_body(doc: dict[str, Any], op: dict[str, Any]) -> Any:
    """A body of the documented shape with every required field, or None."""
    if "requestBody" not in op:
        return None
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        while "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    props = schema.get("properties", {})
    body = {name: VALID[props[name].get("type", "string")] for name in schema.get("required", [])}
    if "max_tokens" in props:
        body["max_tokens"] = 1024
    if "tokens" in props:
        body["tokens"] = ["x"]  # (one of token, tokens is required)
    return body


async def test_every_call_for_an_end_user_names_them_to_the_core(tmp_path: Path) -> None:
    core = await start_core(core_settings(tmp_path))
    key_file = tmp_path / "data" / "relay.token"
    async with recording_proxy(core.app.address) as proxy:
        facade = Facade(facade_settings(proxy.address, trust_forwarded=True, relay_key_file=key_file))
        await facade.start()
        key = key_file.read_text().strip()
        http = httpx.AsyncClient(base_url=facade.url, timeout=10, headers=FORWARDED)
        try:
            doc = (await http.get("/openapi.json")).json()
            checked = 0
            for path, operations in doc["paths"].items():
                for method, op in operations.items():
                    if path in SHARED_STREAMS:
                        continue
                    before = len(proxy.calls)
                    url = re.sub(r"\{[^}]+\}", "x", path)
                    params = {p["name"]: "x" for p in op.get("parameters", []) if p["in"] == "query"}
                    if path == "/api/treasury":
                        params["limit"] = "1"
                    await http.request(
                        method.upper(),
                        url,
                        params=params,
                        json=minimal_body(doc, op),
                        headers={"Cookie": "ashao_session=sess_nobody"},
                    )
                    calls = proxy.calls[before:]
                    assert calls, f"{method} {path} made no call to the core"
                    for call in calls:
                        where = (method, path, call.method)
                        assert call.metadata.get("x-ashao-client-ip") == PROXY_SAW, where
                        assert call.metadata.get("x-ashao-relay-key") == key, where
                    checked += 1
            assert checked >= 30
            # The shared streams carry the facade's own key; each message on them names its end user.
            await http.post("/api/chat/send", json={"tier": "free", "content": "hi"})
            for stream in ("SendMany", "Subscribe"):
                for call in proxy.for_method(stream):
                    assert call.metadata.get("x-ashao-relay-key") == key, stream
        finally:
            await http.aclose()
            await facade.stop()
    await stop_core(core)


LIMITED = {"send_burst_per_ip": 3, "send_rate_per_ip": 0.001}


async def sends(http: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
    out = []
    for i, header in enumerate(forwarded):
        r = await http.post(
            "/api/chat/send", json={"tier": "free", "content": f"m{i}"}, headers={"X-Forwarded-For": header}
        )
        out.append(r.status_code)
    return out


async def test_a_spoofed_forwarded_for_does_not_change_the_rate_limited_address(tmp_path: Path) -> None:
    s = await start_stack(tmp_path, LIMITED, relay_key_file=tmp_path / "data" / "relay.token")
    try:  # no trusted proxy: X-Forwarded-For is only the client's word
        assert await sends(s.http, [f"198.51.100.{i}" for i in range(4)]) == [200, 200, 200, 429]
    finally:
        await stop_stack(s)


async def test_behind_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(tmp_path: Path) -> None:
    s = await start_stack(
        tmp_path, LIMITED, trust_forwarded=True, relay_key_file=tmp_path / "data" / "relay.token"
    )
    try:
        # The proxy (this test, on 127.0.0.1) appends the address it saw; what the client wrote before
        # it changes nothing.
        claims = [f"198.51.100.{i}, {PROXY_SAW}" for i in range(4)]
        assert await sends(s.http, claims) == [200, 200, 200, 429]
        # Each address the proxy saw has a limit of its own.
        assert await sends(s.http, [f"203.0.113.{10 + i}" for i in range(3)]) == [200, 200, 200]
    finally:
        await stop_stack(s)
