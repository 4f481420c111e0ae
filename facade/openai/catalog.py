"""``GET /v1/models`` (the network's tiers, as the core lists them) and ``POST /v1/images/generations``
(the image tier, over the same path as ``/api/images/generate``)."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ashao.v1 import image_pb2, network_pb2
from facade.client import Core, CoreClient
from facade.http import JSON, BadRequest, Metadata, call_metadata
from facade.openai.auth import credential
from facade.openai.errors import OpenAIRoute, error, errors
from facade.openai.models import ImageRequest, ImagesResponse, ModelCard, ModelList

router = APIRouter(route_class=OpenAIRoute, tags=["openai"])

OWNER = "ashao"
_KINDS = {network_pb2.TIER_KIND_CHAT: "chat", network_pb2.TIER_KIND_IMAGE: "image"}
_STYLES = {"vivid": "Cinematic", "natural": "Photographic"}
"""OpenAI's image styles, as ashao's."""
DEFAULT_STYLE = "natural"
MAX_SIDE = 8192
"""Largest side a ``size`` may name."""


def _metadata(request: Request, core: CoreClient) -> Metadata:
    return call_metadata(request, core.settings, token=credential(request, core.settings))


async def _tiers(request: Request, core: CoreClient) -> list[network_pb2.TierInfo]:
    r = await core.network.GetNetworkInfo(
        network_pb2.GetNetworkInfoRequest(), metadata=_metadata(request, core), timeout=core.timeout
    )
    return list(r.tiers)


def _card(t: network_pb2.TierInfo) -> dict[str, Any]:
    return {
        "id": t.model,
        "object": "model",
        "created": 0,  # (a tier has no creation date)
        "owned_by": OWNER,
        "tier": t.name,
        "kind": _KINDS.get(t.kind, "chat"),
        "credit_cost": t.credit_cost,
        "max_tokens": t.max_tokens,
    }


def _no_model(model: str) -> Response:
    return error(404, f"model: no model {model!r}", param="model", code="model_not_found")


@router.get("/v1/models", responses={200: {"model": ModelList}, **errors()})
async def list_models(request: Request, core: Core) -> Response:
    """The models: one per tier, highest priority first, with its `tier`, `kind` (chat or image),
    `credit_cost` (credits per answer or image) and `max_tokens`. `created` is 0."""
    return JSON({"object": "list", "data": [_card(t) for t in await _tiers(request, core)]})


@router.get("/v1/models/{model}", responses={200: {"model": ModelCard}, **errors(404)})
async def get_model(
    model: Annotated[str, Path(description="A model's id.", examples=["ashao-pro"])],
    request: Request,
    core: Core,
) -> Response:
    """One model; 404 `model_not_found` for a name no tier has."""
    for t in await _tiers(request, core):
        if t.model == model:
            return JSON(_card(t))
    return _no_model(model)


def _aspect(size: str | None) -> str:
    """The aspect a ``size`` picks; BadRequest naming ``size`` if it is not ``WxH`` or ``auto``."""
    if size is None or size == "auto":
        return "Square"
    w, sep, h = size.partition("x")
    if not (sep and w.isascii() and w.isdigit() and h.isascii() and h.isdigit()) or not (
        0 < int(w) <= MAX_SIDE and 0 < int(h) <= MAX_SIDE
    ):
        raise BadRequest(f"size: must be WIDTHxHEIGHT (each 1 to {MAX_SIDE}) or auto", field="size")
    width, height = int(w), int(h)
    return "Square" if width == height else "Landscape" if width > height else "Portrait"


@router.post(
    "/v1/images/generations", responses={200: {"model": ImagesResponse}, **errors(400, 401, 402, 404)}
)
async def generate_image(body: ImageRequest, request: Request, core: Core) -> Response:
    """Generate one image, as OpenAI's API does: `prompt`, `model` (`ashao-image`), `n` (1), `size`
    (its proportions pick a square, landscape or portrait picture), `style` (`vivid`, `natural` or one
    of ashao's), `response_format` (`url`, default, or `b64_json`). Needs an API key (401 without one);
    charged at the image tier (402 when the credits do not cover it; refunded if no worker delivers).
    """
    if body.model is not None:
        tiers = {t.model: t for t in await _tiers(request, core)}
        tier = tiers.get(body.model)
        if tier is None:
            return _no_model(body.model)
        if tier.kind != network_pb2.TIER_KIND_IMAGE:
            raise BadRequest(f"model: {body.model} writes chat completions, not images", field="model")
    aspect = _aspect(body.size)
    style = body.style or DEFAULT_STYLE
    metadata = _metadata(request, core)
    r = await core.images.GenerateImage(
        image_pb2.GenerateImageRequest(
            prompt=body.prompt, style=_STYLES.get(style, style), aspect=aspect, nsfw=False
        ),
        metadata=metadata,
        timeout=core.settings.image_timeout_s,
    )
    item: dict[str, Any] = {"revised_prompt": r.image.prompt}
    if body.response_format == "b64_json":
        picture = await core.images.GetImage(
            image_pb2.GetImageRequest(image_id=r.image.id), metadata=metadata, timeout=core.timeout
        )
        item["b64_json"] = base64.b64encode(picture.data).decode()
    else:
        item["url"] = str(request.base_url).rstrip("/") + r.image.url
    return JSON({"created": int(time.time()), "data": [item]})
