"""Image generation: validation, the job's wait for its picture, and reading stored images."""

from __future__ import annotations

import asyncio

from core.errors import InvalidArgumentError, NotFoundError, UnavailableError
from core.identity.principal import Principal, require_user
from core.ids import is_id
from core.jobs.model import ImageParams, StoredImage
from core.jobs.system import JobSystem
from core.store.images import ImageBytes
from core.streams.fanout import Follower

STYLES = (
    "Photographic",
    "Cinematic",
    "Anime",
    "Digital Art",
    "Fantasy",
    "Line Art",
    "Pixel Art",
    "Watercolor",
)
"""The styles a caller may ask for."""

ASPECTS = {"Square": (1024, 1024), "Landscape": (1344, 768), "Portrait": (768, 1344)}
"""The aspects a caller may ask for, with the pixel size each maps to."""

MAX_PROMPT_CHARS = 1000


class ImageService:
    """Generate and fetch images."""

    def __init__(self, *, jobs: JobSystem, files: ImageBytes, timeout_s: float) -> None:
        self._jobs = jobs
        self._files = files
        self._timeout = timeout_s

    async def generate(
        self, principal: Principal, *, prompt: str, style: str, aspect: str, nsfw: bool
    ) -> StoredImage:
        """Validate, charge, dispatch, wait for the picture (refunded if none comes in time). Refused at
        once, uncharged, while no image worker is connected."""
        prompt = prompt.strip()
        if not prompt:
            raise InvalidArgumentError("prompt: must not be empty", field="prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidArgumentError(f"prompt: longer than {MAX_PROMPT_CHARS} characters", field="prompt")
        if style not in STYLES:
            raise InvalidArgumentError(f"style: must be one of {', '.join(STYLES)}", field="style")
        if aspect not in ASPECTS:
            raise InvalidArgumentError(f"aspect: must be one of {', '.join(ASPECTS)}", field="aspect")
        require_user(principal)
        if self._jobs.unserved("image"):
            # Refused before anything is charged: nothing would draw it until the wait ran out.
            raise UnavailableError("no image worker is connected; try again later (nothing was charged)")
        width, height = ASPECTS[aspect]
        job_id = await self._jobs.admission.submit_image(
            principal, ImageParams(prompt, style, aspect, width, height, nsfw)
        )
        # The picture may come from a worker of any core: wait for the job's end on its event log.
        log, _ = await self._jobs.queries.open_log(job_id, principal)
        follower = Follower(log, 0, max_tokens_per_message=1)
        try:
            async with asyncio.timeout(self._timeout):
                while (events := await follower.next()) is not None and events.terminal is None:
                    pass
        except TimeoutError:
            self._jobs.lifecycle.cancel(job_id, "no image worker delivered in time")
            raise UnavailableError("no image worker delivered in time; the credits were refunded") from None
        finally:
            follower.close()
        terminal = log.terminal
        if terminal is None or terminal.kind != "done":
            why = terminal.message if terminal is not None else "failed"
            raise UnavailableError(f"image generation failed: {why}; the credits were refunded")
        image = await self._jobs.repo.image_of_job(job_id)
        if image is None:  # (done without a picture cannot happen: the picture ends the job)
            raise UnavailableError("image generation failed: the picture is missing")
        return image

    async def get(self, image_id: str) -> tuple[StoredImage, bytes]:
        """An image and its bytes (images are public by their unguessable id, as their URL is)."""
        image = await self._jobs.repo.image(image_id) if is_id(image_id, "img") else None
        if image is None:
            raise NotFoundError(f"imageId: no image {image_id!r}", field="imageId")
        try:
            data = await self._files.load(image.sha256, image.mime_type)
        except (KeyError, OSError) as exc:
            raise NotFoundError(f"imageId: the bytes of {image_id!r} are missing", field="imageId") from exc
        return image, data
