"""The core restarting: queued jobs survive and are dispatched after restart."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from ashao_cli.devnet import LocalNetwork, wait_for_port
from tests.helpers.sse import sse

pytestmark = pytest.mark.timeout(90)


async def test_queued_jobs_survive_core_restart(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    jobs = [
        (await http.post("/api/chat/send", json={"tier": "free", "content": f"m{i}"})).json()["jobId"]
        for i in range(3)
    ]
    core = next(p for name, p in net.children if name == "core")
    core.send_signal(signal.SIGKILL)
    await asyncio.to_thread(core.wait, 10)
    net.children.remove(("core", core))
    net.start_core()
    net.start_worker("after", "--backend", "synthetic", "--tokens-per-sec", "0", "--synthetic-tokens", "4")
    for job in jobs:
        events = await asyncio.wait_for(sse(http, job), 30)
        assert events[-1][1] == {"type": "done", "tokens": 4}
    assert wait_for_port(net.http_addr, timeout=1)
