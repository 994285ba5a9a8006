"""Photos: sniff, decode, clean and store uploads; list, reorder, delete, serve.

An upload is decoded and re-encoded with Pillow in a worker thread (never on
the event loop): EXIF (with any GPS position), XMP and comments are dropped,
the orientation is applied to the pixels, the long edge is capped at
:data:`MAX_EDGE_PX`, and a :data:`THUMB_EDGE_PX` thumbnail is made. Only JPEG,
PNG and WebP are accepted, judged by their bytes, never by the client's
Content-Type or file name. Images over :data:`MAX_IMAGE_PIXELS` are refused
before their pixels are decoded (decompression bombs).
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, ImageOps, UnidentifiedImageError

from proximity_server.features.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, UnsupportedMediaType
from proximity_server.features.photo_urls import PhotoUrls
from proximity_server.features.profiles import photo_view
from store.photos import (
    NewPhoto,
    Photo,
    PhotoLimitReached,
    PhotoMissing,
    PhotoOrderMismatch,
    PhotoRecords,
    PhotoStore,
    object_keys,
)

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
MAX_PHOTOS: Final = 6
MAX_EDGE_PX: Final = 2048
THUMB_EDGE_PX: Final = 320
# 40 megapixels: any real camera photo, far below what would exhaust memory.
MAX_IMAGE_PIXELS: Final = 40_000_000
JPEG_QUALITY: Final = 85
WEBP_QUALITY: Final = 85
IMAGE_WORKERS: Final = 2

# Pillow's own guard: warns above the limit and raises above twice it. We
# check the header's size ourselves as well, so a warning never slips by.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# Format name → (magic bytes test, Content-Type).
CONTENT_TYPES: Final = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC: Final = b"\xff\xd8\xff"
# Pixel modes each encoder writes as they are; others are converted first.
_MODES: Final = {
    "JPEG": ("RGB", "L"),
    "WEBP": ("RGB", "RGBA"),
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"),
}


class ImageRejected(Exception):
    """Raised in the worker thread; mapped to an ApiError on the loop."""

    def __init__(self, error: type[BadRequest | PayloadTooLarge | UnsupportedMediaType], message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


def sniff_format(data: bytes) -> str | None:
    """JPEG, PNG or WEBP from the leading bytes, or None."""
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True, slots=True)
class CleanImage:
    content_type: str
    width: int
    height: int
    data: bytes
    thumb: bytes


def _encode(img: Image.Image, fmt: str) -> bytes:
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    elif img.mode not in _MODES[fmt]:
        img = img.convert("RGBA" if img.has_transparency_data else "RGB")
    # Carry over nothing from the source: no EXIF, XMP, comments or text chunks.
    img.info = {k: v for k, v in img.info.items() if k in ("transparency", "icc_profile")}
    out = io.BytesIO()
    options: dict[str, Any] = {"exif": b""}
    if img.info.get("icc_profile"):
        options["icc_profile"] = img.info["icc_profile"]
    if fmt == "JPEG":
        options.update(quality=JPEG_QUALITY, optimize=True)
    elif fmt == "WEBP":
        options.update(quality=WEBP_QUALITY)
    else:
        options.update(optimize=True)
    img.save(out, format=fmt, **options)
    return out.getvalue()


def clean_image(data: bytes) -> CleanImage:
    """Decode, strip metadata, resize and re-encode (CPU work: run in a thread)."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(UnsupportedMediaType, "only JPEG, PNG and WebP images are accepted")
    too_big = f"the image may have at most {MAX_IMAGE_PIXELS} pixels"
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as source:
            width, height = source.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageRejected(PayloadTooLarge, too_big)
            source.seek(0)  # first frame of an animation
            source.load()
            img = ImageOps.exif_transpose(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(PayloadTooLarge, too_big) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageRejected(BadRequest, "the image could not be decoded") from None
    img.thumbnail((MAX_EDGE_PX, MAX_EDGE_PX), Image.Resampling.LANCZOS)
    thumb = img.copy()
    thumb.thumbnail((THUMB_EDGE_PX, THUMB_EDGE_PX), Image.Resampling.LANCZOS)
    return CleanImage(CONTENT_TYPES[fmt], img.width, img.height, _encode(img, fmt), _encode(thumb, fmt))


@dataclass(frozen=True, slots=True)
class PhotoStream:
    content_type: str
    chunks: AsyncGenerator[bytes, None]


class PhotoService:
    def __init__(self, records: PhotoRecords, store: PhotoStore, executor: Executor, urls: PhotoUrls) -> None:
        self.urls = urls
        self._records = records
        self._store = store
        self._executor = executor

    async def check_room(self, user_id: str) -> None:
        """Refuse early (before reading the body) when the user has no room."""
        if await self._records.count(user_id) >= MAX_PHOTOS:
            raise Conflict(f"a profile has at most {MAX_PHOTOS} photos; delete one first")

    async def upload(self, user_id: str, data: bytes) -> dict[str, Any]:
        if sniff_format(data) is None:
            raise UnsupportedMediaType("only JPEG, PNG and WebP images are accepted")
        loop = asyncio.get_running_loop()
        try:
            clean = await loop.run_in_executor(self._executor, clean_image, data)
        except ImageRejected as exc:
            raise exc.error(exc.message) from None
        photo_id = str(uuid.uuid4())
        key, thumb_key = object_keys(user_id, photo_id)
        try:
            await self._store.put(key, clean.data, clean.content_type)
            await self._store.put(thumb_key, clean.thumb, clean.content_type)
        except BaseException:
            await self._forget(key, thumb_key)
            raise
        new = NewPhoto(photo_id, clean.content_type, clean.width, clean.height, len(clean.data), key, thumb_key)
        try:
            photo = await self._records.add(user_id, new, MAX_PHOTOS)
        except PhotoLimitReached:
            await self._forget(key, thumb_key)
            raise Conflict(f"a profile has at most {MAX_PHOTOS} photos; delete one first") from None
        except BaseException:
            await self._forget(key, thumb_key)
            raise
        if photo is None:
            await self._forget(key, thumb_key)
            raise NotFound("no such account")
        return photo_view(photo, self.urls)

    async def _forget(self, *keys: str) -> None:
        """Best-effort removal of objects no row points to (any more): a
        failure is logged, never raised over the error being handled."""
        for key in keys:
            try:
                await self._store.delete(key)
            except Exception:
                log.warning("could not delete a photo object; it is orphaned", extra={"key": key}, exc_info=True)

    async def list_own(self, user_id: str) -> list[dict[str, Any]]:
        return [photo_view(p, self.urls) for p in await self._records.list_for_user(user_id)]

    async def reorder(self, user_id: str, photo_ids: Sequence[str]) -> list[dict[str, Any]]:
        try:
            photos = await self._records.reorder(user_id, photo_ids)
        except PhotoOrderMismatch as exc:
            if exc.unknown:
                raise NotFound("no such photo") from None
            raise BadRequest("send exactly the ids of your photos, each once, in the new order") from None
        return [photo_view(p, self.urls) for p in photos]

    async def delete(self, user_id: str, photo_id: str) -> None:
        photo = await self._records.delete(user_id, photo_id)
        if photo is None:
            raise NotFound("no such photo")
        await self._forget(photo.object_key, photo.thumb_key)

    async def open(self, photo_id: str, *, thumb: bool) -> PhotoStream:
        """A live user's photo, for any signed-in viewer."""
        photo: Photo | None = await self._records.get_visible(photo_id)
        if photo is None:
            raise NotFound("no such photo")
        try:
            chunks = await self._store.open(photo.thumb_key if thumb else photo.object_key)
        except PhotoMissing:
            raise NotFound("no such photo") from None
        return PhotoStream(photo.content_type, chunks)
