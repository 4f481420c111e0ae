"""Reading Server-Sent Events the way a client does, over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson


async def iter_events(r: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of an open SSE response, each as {"id", "event", "data", "comment"} fields (data
    JSON-decoded); a comment-only block (a keep-alive) is an event with just "comment"."""
    current: dict[str, Any] = {}
    async for line in r.aiter_lines():
        if line == "":
            if current:
                yield current
                current = {}
            continue
        if line.startswith(":"):
            current["comment"] = line[1:].strip()
            continue
        name, _, value = line.partition(": ")
        current[name] = orjson.loads(value) if name == "data" else value


def kind_of(event: dict[str, Any]) -> str | None:
    """An event's type: its ``event:`` field, else the ``type`` of its data."""
    kind = event.get("event") or (event.get("data") or {}).get("type")
    return str(kind) if kind is not None else None


async def read_sse(
    http: httpx.AsyncClient,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    json: Any = None,
    until: tuple[str, ...] = ("done", "error"),
    into: list[dict[str, Any]] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """(status, events) of an SSE response: each event as {"id", "event", "data", "comment"} fields
    (data JSON-decoded), until an event whose type (``event:`` or data ``type``) is in ``until``.
    ``into``: a list the events are appended to as they arrive (to wait on them meanwhile)."""
    events: list[dict[str, Any]] = into if into is not None else []
    async with http.stream(method, path, headers=headers, json=json) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, [orjson.loads(r.content)] if r.content else []
        assert r.headers["content-type"].startswith("text/event-stream")
        async for event in iter_events(r):
            events.append(event)
            if kind_of(event) in until:
                break
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
