"""The reference at /openapi.json: it loads, every route in it is reachable, each documents the
``{error}`` responses it can give (never FastAPI's default 422), and each body field is checked
exactly as documented."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.helpers.stack import Stack

pytestmark = pytest.mark.timeout(60)

ERROR_BODY = "#/components/schemas/ErrorBody"


async def openapi(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = r.json()
    return doc


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def json_type(schema: dict[str, Any]) -> str:
    """The JSON type a property schema documents (the non-null one of an optional)."""
    if "anyOf" in schema:
        kinds = [s.get("type") for s in schema["anyOf"] if s.get("type") != "null"]
        return str(kinds[0])
    return str(schema.get("type", "object"))


VALID = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": []}
WRONG = {"string": 5, "integer": "1", "number": "1", "boolean": "yes", "array": "x"}


async def test_the_document_loads_and_every_route_in_it_is_reachable(stack: Stack) -> None:
    doc = await openapi(stack.http)
    assert doc["info"]["title"] == "ashao" and len(doc["paths"]) > 30
    unrouted = {
        "/api/": (await stack.http.get("/api/no/such/route")).json(),
        "/": (await stack.http.get("/no/such/route")).json(),
    }
    for path, method, _ in operations(doc):
        url = re.sub(r"\{[^}]+\}", "x", path)
        body = {} if method in ("post", "put", "patch") else None
        r = await stack.http.request(method.upper(), url, json=body)
        assert r.status_code != 405, (method, path)
        assert r.status_code < 500 or r.status_code == 503, (method, path, r.status_code, r.text)
        if r.status_code == 404:
            surface = "/api/" if path.startswith("/api/") else "/"
            assert r.json() != unrouted[surface], f"{method} {path} is documented but not routed"


async def test_routes_document_their_error_bodies_and_no_422_they_never_give(stack: Stack) -> None:
    doc = await openapi(stack.http)
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorBody"]["required"] == ["error"]
    for path, method, op in operations(doc):
        responses = op["responses"]
        if not path.startswith("/api/"):
            continue  # the relay documents its own envelopes (tests/facade/test_relay_api.py)
        assert "422" not in responses, (method, path)
        takes_input = "requestBody" in op or any(p["in"] != "path" for p in op.get("parameters", []))
        expected = {"503"} | ({"400"} if takes_input else set())
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_BODY}, (method, path, status)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_BODY}


async def test_every_documented_body_field_is_checked_as_documented(stack: Stack) -> None:
    doc = await openapi(stack.http)
    checked = 0
    for path, _, op in operations(doc):
        if not path.startswith("/api/") or "requestBody" not in op:
            continue
        model = resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
        if "anyOf" in model:
            model = resolve(doc, next(s for s in model["anyOf"] if s.get("type") != "null"))
        properties: dict[str, Any] = model["properties"]
        valid = {name: VALID[json_type(properties[name])] for name in model.get("required", [])}
        for name, schema in properties.items():
            body = {**valid, name: WRONG[json_type(schema)]}
            r = await stack.http.post(path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            assert set(r.json()) == {"error"} and r.json()["error"].startswith(f"{name}: "), (path, r.text)
            checked += 1
        for name in model.get("required", []):
            r = await stack.http.post(path, json={k: v for k, v in valid.items() if k != name})
            assert r.status_code == 400 and r.json()["error"] == f"{name}: required", (path, r.text)
    assert checked >= 20


STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/api/chat/send"): {200, 400, 401, 402, 409, 413, 429, 503},
    ("get", "/api/chat/stream"): {200, 204, 400, 401, 404, 503},
    ("get", "/api/jobs/{job_id}"): {200, 401, 404, 503},
    ("get", "/api/conversations/{conversation_id}"): {200, 401, 404, 503},
    ("post", "/api/worker/register"): {200, 400, 401, 403, 413, 429, 503},
    ("post", "/api/worker/claim"): {200, 400, 401, 403, 413, 503},
    ("post", "/api/worker/token"): {200, 400, 401, 403, 413, 503},
    ("post", "/api/worker/complete"): {200, 400, 401, 403, 413, 503},
    ("post", "/api/worker/fail"): {200, 400, 401, 403, 413, 503},
    ("post", "/api/worker/heartbeat"): {200, 400, 401, 413, 503},
    ("get", "/api/worker/me"): {200, 401, 503},
    ("get", "/api/auth/nonce"): {200, 400, 503},
    ("post", "/api/auth/verify"): {200, 400, 401, 413, 503},
    ("post", "/api/auth/logout"): {200, 401, 413, 503},
    ("get", "/api/auth/me"): {200, 401, 503},
    ("get", "/api/credits"): {200, 401, 503},
    ("get", "/api/keys"): {200, 401, 503},
    ("post", "/api/keys"): {200, 400, 401, 413, 503},
    ("delete", "/api/keys/{key_id}"): {200, 401, 404, 503},
    ("get", "/api/stats"): {200, 503},
    ("get", "/api/treasury"): {200, 400, 503},
    ("post", "/api/staking/stake"): {200, 400, 401, 413, 503},
    ("post", "/api/staking/unstake"): {200, 400, 401, 413, 503},
    ("get", "/api/staking"): {200, 401, 503},
    ("post", "/api/images/generate"): {200, 400, 401, 402, 413, 503},
    ("get", "/api/images/{image_id}"): {200, 404, 503},
}
"""What each network operation can answer (tests/facade/test_authorization.py and the schemathesis run
see them answered; the body limit answers 413 on every POST)."""

OPENAI_STATUSES: dict[tuple[str, str], set[int]] = {
    ("post", "/v1/chat/completions"): {200, 400, 401, 402, 404, 409, 413, 429, 503, 504},
    ("get", "/v1/models"): {200, 503},
    ("get", "/v1/models/{model}"): {200, 404, 503},
    ("post", "/v1/images/generations"): {200, 400, 401, 402, 404, 413, 503},
}
"""What each operation of the OpenAI-compatible API can answer (tests/facade/test_openai_*.py see them
answered), every failure in OpenAI's error shape."""


async def test_each_operation_documents_exactly_the_statuses_it_can_answer(stack: Stack) -> None:
    doc = await openapi(stack.http)
    network = {(method, path): op for path, method, op in operations(doc) if path.startswith("/api/")}
    assert set(network) == set(STATUSES)
    for key, op in network.items():
        assert {int(s) for s in op["responses"]} == STATUSES[key], key
    openai = {(method, path): op for path, method, op in operations(doc) if path.startswith("/v1/")}
    assert set(openai) == set(OPENAI_STATUSES)
    for key, op in openai.items():
        assert {int(s) for s in op["responses"]} == OPENAI_STATUSES[key], key
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/OpenAIErrorBody"}, (key, status)
    for path, method, op in operations(doc):
        if method == "post" and not path.startswith(("/api/", "/v1/")):  # the relay's 413 is its envelope
            schema = op["responses"]["413"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/PayloadTooLargeEnvelope"}, path


def event_data(doc: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    """The documented events of a stream's 200: event name (or data ``type``) → its data schema."""
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert "type" not in schema  # (the schema of one event, an object: not the stream as a string)
    out: dict[str, dict[str, Any]] = {}
    for event in schema["oneOf"]:
        assert set(event["required"]) == {"event", "data"}
        data = event["properties"]["data"]
        assert data["contentMediaType"] == "application/json"
        name = event["properties"]["event"]["const"]
        if name == "message":  # unnamed events, told apart by their data's `type`
            name = data["contentSchema"]["properties"]["type"]["const"]
        out[name] = data["contentSchema"]
    return out


async def test_the_event_streams_document_their_events(stack: Stack) -> None:
    doc = await openapi(stack.http)
    relay = event_data(doc, "/chat/stream", "post")
    assert set(relay) == {"chunk", "done", "error"}
    assert relay["chunk"]["required"] == ["text"]
    for name in ("done", "error"):
        assert set(relay[name]["required"]) == {"envelope", "signature", "key_id"}
    verdicts = [e["properties"]["verdict"]["const"] for e in relay["done"]["properties"]["envelope"]["anyOf"]]
    assert verdicts == ["response", "refusal"]
    network = event_data(doc, "/api/chat/stream", "get")
    assert set(network) == {"token", "done", "error"}
    assert {name: set(s["required"]) for name, s in network.items()} == {
        "token": {"type", "value"},
        "done": {"type", "tokens"},
        "error": {"type", "message"},
    }


async def test_a_405_names_every_method_its_path_has(stack: Stack) -> None:
    doc = await openapi(stack.http)
    for path, ops in doc["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path)
        r = await stack.http.request("PATCH", url)  # no route takes PATCH
        assert r.status_code == 405, (path, r.status_code)
        allowed = {m.strip().lower() for m in r.headers["allow"].split(",")} - {"head"}
        assert allowed == set(ops), (path, r.headers["allow"])


async def test_the_openai_chat_documents_both_of_its_answers(stack: Stack) -> None:
    doc = await openapi(stack.http)
    ok = doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    events = ok["text/event-stream"]["schema"]["oneOf"]
    assert "type" not in ok["text/event-stream"]["schema"]
    data = [e["properties"]["data"] for e in events]
    assert data[0]["contentSchema"]["properties"]["object"]["const"] == "chat.completion.chunk"
    assert data[1]["contentSchema"]["required"] == ["error"]
    assert data[2] == {"const": "[DONE]"}
    assert all("id" not in e["properties"] for e in events)  # (not resumable: a POST)
