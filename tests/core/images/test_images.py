"""Images over the core: charged, dispatched to an image worker, stored content-addressed, refunded on failure."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest

from ashao.v1 import account_pb2, image_pb2, image_pb2_grpc, worker_pb2
from core.economics import SIGNUP_GRANT, TIERS
from core.money.ledger import worker_account
from tests.helpers.core import Core, connect_worker, core_settings, start_core, stop_core
from tests.helpers.images import png

pytestmark = pytest.mark.timeout(60)


async def credits(core: Core, md: object) -> int:
    return (await core.accounts.GetCredits(account_pb2.GetCreditsRequest(), metadata=md)).credits


async def test_generate_store_and_fetch(core: Core) -> None:
    user = await core.sign_in()
    images = image_pb2_grpc.ImageServiceStub(core.channel)
    worker = await connect_worker(core, slots=1, tiers=("image",))
    call = asyncio.ensure_future(
        images.GenerateImage(
            image_pb2.GenerateImageRequest(
                prompt="a violet aurora over a quiet network of cities", style="Cinematic", aspect="Landscape"
            ),
            metadata=user,
        )
    )
    a = await worker.assignment()
    assert a.tier == "image" and a.image.prompt.startswith("a violet aurora")
    assert (a.image.style, a.image.aspect, a.image.width, a.image.height) == (
        "Cinematic",
        "Landscape",
        1344,
        768,
    )
    data = png()
    await worker.call.write(
        worker_pb2.ConnectRequest(
            image=worker_pb2.ImageResult(job_id=a.job_id, data=data, mime_type="image/png")
        )
    )
    r = await asyncio.wait_for(call, 10)
    assert r.image.id.startswith("img_") and r.image.url == f"/api/images/{r.image.id}"
    assert r.image.sha256 == hashlib.sha256(data).hexdigest()
    got = await images.GetImage(image_pb2.GetImageRequest(image_id=r.image.id))
    assert got.data == data and got.image.mime_type == "image/png"
    stored = core.app.image_files.path(r.image.sha256, "image/png")
    assert stored.read_bytes() == data
    cost = TIERS["image"].credit_cost
    assert await credits(core, user) == SIGNUP_GRANT - cost
    assert await core.app.ledger.balance(worker_account(worker.worker_id)) == TIERS["image"].split(cost)[0]


async def test_bad_requests_and_anonymous_callers(core: Core) -> None:
    images = image_pb2_grpc.ImageServiceStub(core.channel)
    user = await core.sign_in()
    cases = [
        ("", "Cinematic", "Square", "prompt"),
        ("x" * 1001, "Cinematic", "Square", "prompt"),
        ("cat", "Baroque", "Square", "style"),
        ("cat", "Cinematic", "Wide", "aspect"),
    ]
    for prompt, style, aspect, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await images.GenerateImage(
                image_pb2.GenerateImageRequest(prompt=prompt, style=style, aspect=aspect), metadata=user
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(field)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await images.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="cat", style="Anime", aspect="Square")
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await credits(core, user) == SIGNUP_GRANT


async def test_garbage_bytes_refused_then_failure_refunds(core: Core) -> None:
    user = await core.sign_in()
    images = image_pb2_grpc.ImageServiceStub(core.channel)
    worker = await connect_worker(core, slots=1, tiers=("image",))
    call = asyncio.ensure_future(
        images.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="cat", style="Anime", aspect="Square"), metadata=user
        )
    )
    a = await worker.assignment()
    await worker.call.write(
        worker_pb2.ConnectRequest(
            image=worker_pb2.ImageResult(
                job_id=a.job_id, data=b"<html>not an image</html>", mime_type="image/png"
            )
        )
    )
    msg = await worker.next()
    assert msg.HasField("rejected") and msg.rejected.code == "INVALID_ARGUMENT"
    await worker.fail(a.job_id, retryable=False)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call, 10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "refunded" in (info.value.details() or "")
    assert await credits(core, user) == SIGNUP_GRANT


async def test_no_image_worker_connected_is_refused_at_once_uncharged(core: Core) -> None:
    """With the default image timeout (120 s), a wait would outlast this module's 60 s test timeout."""
    user = await core.sign_in()
    images = image_pb2_grpc.ImageServiceStub(core.channel)
    chat_only = await connect_worker(core, slots=1, tiers=("free",))  # a worker, but none that draws
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await images.GenerateImage(
            image_pb2.GenerateImageRequest(prompt="cat", style="Anime", aspect="Square"), metadata=user
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (info.value.details() or "").startswith("no image worker is connected")
    assert await credits(core, user) == SIGNUP_GRANT
    assert len(core.app.jobs.board) == 0 and core.app.jobs.snapshot().queue_depth == 0
    chat_only.cancel()


async def test_an_image_worker_that_does_not_deliver_in_time_is_refunded(tmp_path: Path) -> None:
    c = await start_core(core_settings(tmp_path, image_timeout_s=0.5))
    try:
        user = await c.sign_in()
        images = image_pb2_grpc.ImageServiceStub(c.channel)
        silent = await connect_worker(c, slots=1, tiers=("image",))
        call = asyncio.ensure_future(
            images.GenerateImage(
                image_pb2.GenerateImageRequest(prompt="cat", style="Anime", aspect="Square"), metadata=user
            )
        )
        assignment = await silent.assignment()  # taken, never answered
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call, 10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "in time" in (info.value.details() or "") and "refunded" in (info.value.details() or "")
        assert await credits(c, user) == SIGNUP_GRANT
        cancel = await silent.next()
        assert cancel.HasField("cancel") and cancel.cancel.job_id == assignment.job_id
        silent.cancel()
    finally:
        await stop_core(c)
