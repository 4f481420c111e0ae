"""The synthetic image backend draws a real PNG from the prompt, labelled as development output, and a
worker with it serves the core's image tier."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ashao.v1 import image_pb2, image_pb2_grpc
from core.images.service import ASPECTS
from tests.helpers.agents import agent_settings, running
from tests.helpers.core import Core
from tests.helpers.images import read_png
from worker_agent.backends.images import ImageBackendError
from worker_agent.backends.pixelfont import wrap
from worker_agent.backends.synthetic_image import BANNER, draw
from worker_agent.main import build_image_backend

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_a_png_of_the_asked_size_labelled_as_development_output(aspect: str) -> None:
    width, height = ASPECTS[aspect]
    picture = read_png(draw(prompt="a violet aurora", style="Cinematic", width=width, height=height))
    assert (picture.width, picture.height) == (width, height)
    assert picture.texts["Description"] == "a violet aurora"
    assert "development output" in picture.texts["Comment"] and "no model" in picture.texts["Comment"]
    assert len({bytes(row) for row in picture.rows}) > 10  # a picture, not a flat fill


def test_the_picture_follows_the_prompt_and_style() -> None:
    def pixels(prompt: str, style: str = "Anime") -> bytes:
        return b"".join(read_png(draw(prompt=prompt, style=style, width=320, height=200)).rows)

    assert pixels("a cat") == pixels("a cat")  # the same request, the same picture
    assert pixels("a cat") != pixels("a dog")
    assert pixels("a cat") != pixels("a cat", "Watercolor")
    # A prompt of a thousand characters, any script, is drawn too (what the font lacks shows as "?").
    long = read_png(draw(prompt="日本語 " * 200, style="Anime", width=64, height=64))
    assert (long.width, long.height) == (64, 64)


def test_sizes_out_of_bounds_are_refused() -> None:
    for width, height in ((0, 10), (10, 5000)):
        with pytest.raises(ImageBackendError) as info:
            draw(prompt="x", style="Anime", width=width, height=height)
        assert not info.value.retryable


def test_captions_wrap_between_words_and_say_when_they_are_cut() -> None:
    assert wrap("a violet aurora over cities", 10, 5) == ["a violet", "aurora", "over", "cities"]
    assert wrap("abcdefghijklmnop", 6, 5) == ["abcdef", "ghijkl", "mnop"]
    assert wrap("one two three four five six", 9, 2) == ["one two", "three..."]
    assert wrap(BANNER, 17, 3) == ["DEVELOPMENT IMAGE", "- NO MODEL"]  # a narrow drawing wraps it


async def test_a_worker_with_the_synthetic_image_backend_serves_images(tmp_path: Path, core: Core) -> None:
    settings = agent_settings(
        tmp_path,
        core.app.address,
        backend=None,
        image_backend="synthetic",
        slots=1,
        join_token=await core.join_token(),
    )
    images = build_image_backend(settings)
    assert images is not None
    async with running(settings, image_backend=images) as (agent, _):
        assert agent.tiers == ("image",)
        user = await core.sign_in()
        stub = image_pb2_grpc.ImageServiceStub(core.channel)
        r = await stub.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="a lighthouse", style="Pixel Art", aspect="Portrait"),
            metadata=user,
            timeout=20,
        )
        got = await stub.GetImage(image_pb2.GetImageRequest(image_id=r.image.id), timeout=5)
    await images.aclose()
    assert r.image.mime_type == "image/png" and r.image.sha256 == hashlib.sha256(got.data).hexdigest()
    picture = read_png(got.data)
    assert (picture.width, picture.height) == ASPECTS["Portrait"]
    assert picture.texts["Description"] == "a lighthouse"
