"""Network figures, the treasury, staking, and images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field
from starlette.responses import Response

from ashao.v1 import image_pb2, network_pb2, treasury_pb2
from facade.client import Core
from facade.http import JSON, call_metadata
from facade.network.errors import NetworkRoute, errors
from facade.validation import Body, Int64, Text

router = APIRouter(route_class=NetworkRoute)


class AmountBody(Body):
    """How much $ASHAO to move."""

    amount: Int64 = Field(description="A positive integer.", examples=[1000])


class ImageBody(Body):
    """What to draw."""

    prompt: Text = Field(examples=["a violet aurora over a quiet network of cities"])
    style: Text = Field(
        examples=["Cinematic"],
        description="Photographic, Cinematic, Anime, Digital Art, Fantasy, Line Art, Pixel Art, Watercolor",
    )
    aspect: Text = Field(examples=["Landscape"], description="Square, Landscape or Portrait")
    nsfw: bool = False


@router.get("/api/stats", tags=["network"], responses=errors())
async def stats(request: Request, core: Core) -> Response:
    """Live network figures: `activeWorkers, queueDepth, jobsCompleted, tokensPerSec`."""
    r = await core.network.GetStats(
        network_pb2.GetStatsRequest(), metadata=call_metadata(request, core.settings), timeout=core.timeout
    )
    return JSON(
        {
            "activeWorkers": r.active_workers,
            "queueDepth": r.queue_depth,
            "jobsCompleted": r.jobs_completed,
            "tokensPerSec": round(r.tokens_per_sec, 2),
        }
    )


def _snapshot(s: treasury_pb2.TreasurySnapshot) -> dict[str, Any]:
    return {
        "at": s.at_ms,
        "balance": s.balance,
        "totalBurned": s.total_burned,
        "rewardsPaid": s.rewards_paid,
        "circulatingSupply": s.circulating_supply,
        "price": s.price,
    }


@router.get("/api/treasury", tags=["treasury"], responses=errors(400))
async def treasury(
    request: Request,
    core: Core,
    limit: Annotated[
        int, Query(ge=0, le=2**32 - 1, description="At most this many snapshots in `series` (0: all).")
    ] = 0,
) -> Response:
    """The latest treasury figures (balance, totalBurned, rewardsPaid, circulatingSupply, price) and
    the series of snapshots for charting (oldest first; `?limit=` bounds it)."""
    r = await core.treasury.GetTreasury(
        treasury_pb2.GetTreasuryRequest(limit=limit),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON({**_snapshot(r.current), "series": [_snapshot(s) for s in r.series]})


def _position(p: treasury_pb2.StakingPosition) -> dict[str, Any]:
    return {"balance": p.balance, "staked": p.staked, "rewards": p.rewards}


@router.post("/api/staking/stake", tags=["treasury"], responses=errors(400, 401))
async def stake(body: AmountBody, request: Request, core: Core) -> Response:
    """Move $ASHAO from your balance to your stake (positive integers, at most what you hold)."""
    r = await core.treasury.Stake(
        treasury_pb2.StakeRequest(amount=body.amount),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON(_position(r.position))


@router.post("/api/staking/unstake", tags=["treasury"], responses=errors(400, 401))
async def unstake(body: AmountBody, request: Request, core: Core) -> Response:
    """Move $ASHAO from your stake back to your balance."""
    r = await core.treasury.Unstake(
        treasury_pb2.UnstakeRequest(amount=body.amount),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return JSON(_position(r.position))


@router.get("/api/staking", tags=["treasury"], responses=errors(401))
async def staking(request: Request, core: Core) -> Response:
    """Your staking position: `{balance, staked, rewards}`."""
    r = await core.treasury.GetStaking(
        treasury_pb2.GetStakingRequest(), metadata=call_metadata(request, core.settings), timeout=core.timeout
    )
    return JSON(_position(r.position))


def _image(i: image_pb2.Image) -> dict[str, Any]:
    return {
        "id": i.id,
        "url": i.url,
        "prompt": i.prompt,
        "style": i.style,
        "aspect": i.aspect,
        "sha256": i.sha256,
        "mimeType": i.mime_type,
    }


@router.post("/api/images/generate", tags=["images"], responses=errors(400, 401, 402))
async def generate_image(body: ImageBody, request: Request, core: Core) -> Response:
    """Generate an image (charged at the image tier, refunded if no worker delivers):
    `{image: {id, url, prompt}}`."""
    r = await core.images.GenerateImage(
        image_pb2.GenerateImageRequest(
            prompt=body.prompt, style=body.style, aspect=body.aspect, nsfw=body.nsfw
        ),
        metadata=call_metadata(request, core.settings),
        timeout=core.settings.image_timeout_s,
    )
    return JSON({"image": _image(r.image)})


@router.get(
    "/api/images/{image_id}",
    tags=["images"],
    response_class=Response,
    responses={200: {"content": {"image/*": {}}, "description": "The image."}, **errors(404)},
)
async def get_image(image_id: str, request: Request, core: Core) -> Response:
    """The stored image's bytes (content-addressed, so cacheable for good)."""
    r = await core.images.GetImage(
        image_pb2.GetImageRequest(image_id=image_id),
        metadata=call_metadata(request, core.settings),
        timeout=core.timeout,
    )
    return Response(
        r.data,
        media_type=r.image.mime_type,
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "ETag": f'"{r.image.sha256}"',
            "X-Content-Type-Options": "nosniff",  # shown only as the image type it was stored with
        },
    )
