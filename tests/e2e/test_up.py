"""`ashao up`: one command starts the network; SIGINT stops everything it started."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from ashao_cli.devnet import wait_for_port
from tests.helpers.procs import ashao_up

pytestmark = pytest.mark.timeout(90)


def test_up_serves_and_stops_cleanly(tmp_path: Path) -> None:
    with ashao_up(tmp_path, "--tokens-per-sec", "0") as (proc, http_addr, grpc_addr):
        assert wait_for_port(http_addr, timeout=60, proc=proc)
        with httpx.Client(base_url=f"http://{http_addr}", timeout=10) as client:
            job = client.post("/api/chat/send", json={"tier": "free", "content": "hi"}).json()["jobId"]
            with client.stream("GET", "/api/chat/stream", params={"jobId": job}) as r:
                lines = [line for line in r.iter_lines() if line.startswith("data: ")]
            assert lines[-1].startswith('data: {"type":"done"')
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert f"HTTP on http://{http_addr}" in out and "stopped" in out
        assert not wait_for_port(http_addr, timeout=0.5) and not wait_for_port(grpc_addr, timeout=0.5)
