"""The OpenAI-compatible API through the official ``openai`` npm package: a Node script
(``node/openai_client.mjs``) makes a whole and a streamed completion, lists the models and meets three
errors against a real network; this test checks what it saw. Skipped where Node or the package (``npm
install``) is missing."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.helpers.livenet import LiveNet, live_network
from tests.helpers.openai_clients import api_key, base_url, prompt_estimate, synthetic

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("node") / "openai_client.mjs"
RUN_TIMEOUT_S = 60
NODE = shutil.which("node")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LiveNet]:
    if NODE is None:
        pytest.skip("node is not installed: the npm openai package cannot be run")
    if not (ROOT / "node_modules" / "openai" / "package.json").is_file():
        pytest.skip("the npm openai package is not installed: run `npm install`")
    async with live_network(tmp_path) as n:
        yield n


async def run_node(*args: str) -> dict[str, Any]:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, str(SCRIPT), *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")
    result: dict[str, Any] = orjson.loads(out)
    return result


async def test_the_node_sdk_talks_to_the_api(net: LiveNet) -> None:
    key = await api_key(net.stack.http, net.user_token)
    seen = await run_node(base_url(net.url), key)
    assert seen["whole"]["content"] == synthetic(16) and seen["whole"]["finish"] == "stop"
    assert seen["whole"]["id"].startswith("job_")
    assert seen["whole"]["usage"] == {
        "prompt_tokens": prompt_estimate("hi"),
        "completion_tokens": 16,
        "total_tokens": prompt_estimate("hi") + 16,
    }
    stream = seen["stream"]
    assert (stream["text"], stream["finish"]) == (synthetic(4), "length")
    assert stream["usage"]["completion_tokens"] == 4 and stream["chunks"] >= 3
    assert stream["usage"]["prompt_tokens"] == prompt_estimate("Count.", "hi")
    assert set(seen["models"]) == {"ashao-free", "ashao-basic", "ashao-pro", "ashao-ultra", "ashao-image"}
    assert seen["notFound"] == {"kind": True, "status": 404, "code": "model_not_found", "param": "model"}
    assert seen["badRequest"] == {
        "kind": True,
        "status": 400,
        "code": "invalid_value",
        "param": "temperature",
    }
    assert seen["unauthenticated"] == {"kind": True, "status": 401, "code": "invalid_api_key", "param": None}
