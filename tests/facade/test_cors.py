"""CORS is one policy for every surface: a page on an allowed origin may call ``/api``, ``/v1`` and the
relay with the headers their clients send (the OpenAI SDK for JavaScript's included), and read the
answers, failures too; any other origin is given no CORS headers at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.timeout(60)

APP = "https://app.example"
SDK_HEADERS = (
    "authorization, content-type, idempotency-key, x-stainless-arch, x-stainless-lang, x-stainless-os, "
    "x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, "
    "x-stainless-runtime-version, x-stainless-timeout"
)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    s = await start_stack(tmp_path, cors_origins=f"{APP}, https://other.example")
    try:
        yield s
    finally:
        await stop_stack(s)


def listed(r: httpx.Response, header: str) -> set[str]:
    return {h.strip().lower() for h in r.headers.get(header, "").split(",") if h.strip()}


def assert_readable_by_app(r: httpx.Response) -> None:
    assert r.headers.get("access-control-allow-origin") == APP, (r.status_code, dict(r.headers))
    assert r.headers.get("access-control-allow-credentials") == "true"
    assert {"retry-after", "x-should-retry", "x-ashao-signature"} <= listed(
        r, "access-control-expose-headers"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/models"),
        ("POST", "/api/chat/send"),
        ("GET", "/api/chat/stream"),
        ("POST", "/chat/stream"),
    ],
)
async def test_a_preflight_with_the_sdk_headers_is_allowed_on_every_surface(
    stack: Stack, method: str, path: str
) -> None:
    preflight = {"Access-Control-Request-Method": method, "Access-Control-Request-Headers": SDK_HEADERS}
    r = await stack.http.options(path, headers={"Origin": APP, **preflight})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-credentials"] == "true"
    assert {h.strip() for h in SDK_HEADERS.split(",")} <= listed(r, "access-control-allow-headers")
    assert method in r.headers["access-control-allow-methods"]
    r = await stack.http.options(path, headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in r.headers


async def test_answers_and_failures_of_v1_carry_the_same_cors_headers_as_api(stack: Stack) -> None:
    origin = {"Origin": APP}
    answers = [
        await stack.http.get("/v1/models", headers=origin),
        await stack.http.post(
            "/v1/chat/completions",
            headers={**origin, "Authorization": "Bearer ak_not_a_key"},
            json={"model": "ashao-free", "messages": [{"role": "user", "content": "hi"}]},
        ),
        await stack.http.post(
            "/v1/chat/completions", headers=origin, json={"model": "no-such-model", "messages": []}
        ),
        await stack.http.get("/api/stats", headers=origin),
        await stack.http.post("/api/chat/send", headers=origin, json={"tier": "gold", "content": "hi"}),
        await stack.http.get("/api/chat/stream", params={"jobId": "job_unknown"}, headers=origin),
    ]
    assert [r.status_code for r in answers] == [200, 401, 400, 200, 400, 404]
    for r in answers:
        assert_readable_by_app(r)
    r = await stack.http.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
