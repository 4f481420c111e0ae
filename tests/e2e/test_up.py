"""`ashao up`: one command starts the network; SIGINT stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ashao_cli.devnet import wait_for_port
from tests.helpers.net import free_port

pytestmark = pytest.mark.timeout(90)


def test_up_serves_and_stops_cleanly(tmp_path: Path) -> None:
    http_addr, grpc_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = dict(
        os.environ, ASHAO_HTTP_ADDR=http_addr, ASHAO_GRPC_ADDR=grpc_addr, ASHAO_DATA_DIR=str(tmp_path / "d")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ashao_cli", "up", "--tokens-per-sec", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
