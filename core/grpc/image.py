"""ImageService: generate and read images."""

from __future__ import annotations

from ashao.v1 import image_pb2, image_pb2_grpc
from core.grpc.context import Callers, Ctx, bearer
from core.identity.directory import Directory
from core.images.service import ImageService


class ImageServicer(image_pb2_grpc.ImageServiceServicer):
    """Images."""

    def __init__(self, *, images: ImageService, directory: Directory, callers: Callers) -> None:
        self._images = images
        self._directory = directory
        self._callers = callers

    async def GenerateImage(
        self, request: image_pb2.GenerateImageRequest, context: Ctx
    ) -> image_pb2.GenerateImageResponse:
        """Generate, store and describe an image."""
        principal = await self._directory.resolve(bearer(context), self._callers.ip(context))
        image = await self._images.generate(
            principal, prompt=request.prompt, style=request.style, aspect=request.aspect, nsfw=request.nsfw
        )
        return image_pb2.GenerateImageResponse(image=image.to_proto())

    async def GetImage(self, request: image_pb2.GetImageRequest, context: Ctx) -> image_pb2.GetImageResponse:
        """A stored image's bytes."""
        image, data = await self._images.get(request.image_id)
        return image_pb2.GetImageResponse(image=image.to_proto(), data=data)
