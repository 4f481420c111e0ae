"""A network as ``ashao up`` starts it, with its synthetic development worker: a real worker that joins it
is not starved, and images work without an image server."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from ashao_cli.config import UpSettings
from ashao_cli.devnet import LocalNetwork
from tests.helpers.images import read_png
from tests.helpers.sse import sse, text_of
from tests.helpers.upstream import FakeUpstream
from tests.helpers.wallet import sign_in_over_http

pytestmark = pytest.mark.timeout(120)

JOBS = 8


def start_dev_worker(net: LocalNetwork) -> None:
    """The local worker ``ashao up`` starts, with its defaults."""
    defaults = UpSettings.model_fields
    net.start_local_worker(
        "local-1",
        slots=defaults["worker_slots"].get_default(),
        tokens_per_sec=defaults["tokens_per_sec"].get_default(),
    )


async def wait_workers(http: httpx.AsyncClient, n: int) -> None:
    for _ in range(600):
        if (await http.get("/api/stats")).json()["activeWorkers"] >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} worker(s) never became active")


async def test_sequential_jobs_spread_over_the_dev_worker_and_a_real_one(
    net: LocalNetwork, http: httpx.AsyncClient
) -> None:
    start_dev_worker(net)
    await wait_workers(http, 1)
    async with FakeUpstream([f"w{i} " for i in range(8)], delay_s=0.005).running() as up:
        net.start_worker(
            "gpu-1",
            "--backend",
            "openai",
            "--upstream",
            f"http://127.0.0.1:{up.port}/v1",
            "--model",
            "tiny-model",
            "--slots",
            "2",
        )
        await wait_workers(http, 2)
        answered_by: Counter[str] = Counter()
        for i in range(JOBS):  # one at a time: each ends before the next is sent
            r = await http.post("/api/chat/send", json={"tier": "free", "content": f"question {i}"})
            assert r.status_code == 200, r.text
            events = await sse(http, r.json()["jobId"])
            assert events[-1][1]["type"] == "done", events
            text = text_of(events)
            answered_by["synthetic" if text.startswith("tok0 ") else "real"] += 1
            assert text.startswith(("tok0 ", "w0 ")), text
        assert len(up.requests) == answered_by["real"]
    assert answered_by["real"] >= 2 and answered_by["synthetic"] >= 2, answered_by


async def test_images_are_drawn_by_the_dev_worker(net: LocalNetwork, http: httpx.AsyncClient) -> None:
    _, session = await sign_in_over_http(http)
    user = {"Authorization": f"Bearer {session}"}
    body = {"prompt": "a violet aurora", "style": "Cinematic", "aspect": "Landscape", "nsfw": False}
    r = await http.post("/api/images/generate", json=body, headers=user)
    assert r.status_code == 503 and r.json()["error"].startswith("no image worker is connected"), r.text
    start_dev_worker(net)
    await wait_workers(http, 1)
    r = await http.post("/api/images/generate", json=body, headers=user)
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert image["prompt"] == "a violet aurora" and image["url"].startswith("/api/images/img_")
    got = await http.get(image["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    picture = read_png(got.content)
    assert (picture.width, picture.height) == (1344, 768)
    assert "development output" in picture.texts["Comment"]
