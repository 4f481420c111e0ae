"""End-to-end fixtures: the real processes (core, facade, workers) on ephemeral loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ashao_cli.devnet import LocalNetwork, free_port


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    n = LocalNetwork(
        data_dir=tmp_path / "data",
        http_addr=f"127.0.0.1:{free_port()}",
        grpc_addr=f"127.0.0.1:{free_port()}",
        extra_env={"ASHAO_HEARTBEAT_INTERVAL_MS": "300"},
    )
    try:
        n.start_core()
        n.start_facade()
        yield n
    finally:
        n.stop(timeout=15)


@pytest.fixture
async def http(net: LocalNetwork) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{net.http_addr}", timeout=15) as client:
        yield client


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
