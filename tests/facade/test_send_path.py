"""Sends served beneath FastAPI's layers answer exactly as the route does, errors included."""

from __future__ import annotations

import pytest

from tests.helpers.stack import Stack

pytestmark = pytest.mark.timeout(60)


async def test_sends_and_their_errors_keep_their_documented_shapes(stack: Stack) -> None:
    ok = await stack.http.post("/api/chat/send", json={"tier": "free", "content": "hi"})
    assert ok.status_code == 200 and set(ok.json()) == {"jobId", "conversationId"}
    assert float(ok.headers["x-ashao-overhead-ms"]) >= 0
    unknown_tier = await stack.http.post("/api/chat/send", json={"tier": "gold", "content": "hi"})
    assert unknown_tier.status_code == 400 and "tier" in unknown_tier.json()["error"]
    missing = await stack.http.post("/api/chat/send", json={"tier": "free"})  # the route answers it
    assert missing.status_code == 400 and "content" in missing.json()["error"]
    not_json = await stack.http.post(
        "/api/chat/send", content=b"tier=free", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert not_json.status_code == 400 and set(not_json.json()) == {"error"}
    broken = await stack.http.post(
        "/api/chat/send", content=b'{"tier": "free", ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and set(broken.json()) == {"error"}
