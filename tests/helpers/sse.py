"""Reading Server-Sent Events the way a client does, over a real socket."""

from __future__ import annotations

from typing import Any

import httpx
import orjson


async def read_sse(
    http: httpx.AsyncClient,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json: Any = None,
    until: tuple[str, ...] = ("done", "error"),
) -> tuple[int, list[dict[str, Any]]]:
    """(status, events) of an SSE response: each event as {"id", "event", "data", "comment"} fields
    (data JSON-decoded), until an event whose type (``event:`` or data ``type``) is in ``until``."""
    events: list[dict[str, Any]] = []
    async with http.stream(method, path, headers=headers, json=json) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, [orjson.loads(r.content)]
        assert r.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in r.aiter_lines():
            if line == "":
                if current:
                    events.append(current)
                    kind = current.get("event") or (current.get("data") or {}).get("type")
                    current = {}
                    if kind in until:
                        break
                continue
            if line.startswith(":"):
                current["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(": ")
            current[name] = orjson.loads(value) if name == "data" else value
    return 200, events


async def sse(
    client: httpx.AsyncClient, job_id: str, *, last_event_id: str = ""
) -> list[tuple[str, dict[str, Any]]]:
    """Every (id, data) event of a job's stream until done or error."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", "/api/chat/stream", params={"jobId": job_id}, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        event_id = ""
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                events.append((event_id, data))
                if data["type"] in ("done", "error"):
                    break
    return events


def text_of(events: list[tuple[str, dict[str, Any]]]) -> str:
    """The concatenated token values."""
    return "".join(d["value"] for _, d in events if d["type"] == "token")
