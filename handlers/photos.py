"""POST /me/photos, PUT /me/photos/order, DELETE /me/photos/{photo_id},
GET /photos/{photo_id} and /photos/{photo_id}/thumb (signed-in users only)."""

from __future__ import annotations

import uuid
from typing import Final

from aiohttp import web

from protocol.codes import ErrorCode
from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply, path_uuid, read_json_value, read_multipart_file
from proximity_server.app.middlewares import streamed_response_headers
from proximity_server.features.errors import BadRequest
from proximity_server.features.photos import MAX_PHOTOS, MAX_UPLOAD_BYTES

FILE_FIELD: Final = "file"
# Photo bytes are private to signed-in users: caches may keep them per user only.
PHOTO_CACHE_CONTROL: Final = "private, max-age=3600"


async def upload_photo(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    photos = request.app[keys.PHOTOS]
    await photos.check_room(user.user_id)
    data = await read_multipart_file(request, FILE_FIELD, MAX_UPLOAD_BYTES)
    return json_reply(201, await photos.upload(user.user_id, data))


async def list_photos(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return json_reply(200, {"items": await request.app[keys.PHOTOS].list_own(user.user_id)})


async def reorder_photos(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    body = await read_json_value(request)
    if not isinstance(body, list) or len(body) > MAX_PHOTOS or not all(isinstance(i, str) for i in body):
        raise BadRequest("send a JSON list of your photo ids", code=ErrorCode.INVALID_FIELD)
    try:
        photo_ids = [str(uuid.UUID(i)) for i in body]
    except ValueError:
        raise BadRequest("send a JSON list of your photo ids", code=ErrorCode.INVALID_FIELD) from None
    return json_reply(200, {"items": await request.app[keys.PHOTOS].reorder(user.user_id, photo_ids)})


async def delete_photo(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    photo_id = path_uuid(request, "photo_id", "photo")
    await request.app[keys.PHOTOS].delete(user.user_id, photo_id)
    return web.Response(status=204)


async def _serve(request: web.Request, *, thumb: bool) -> web.StreamResponse:
    await authenticated_user(request, count_request=False)  # a discovery page shows dozens
    photo_id = path_uuid(request, "photo_id", "photo")
    stream = await request.app[keys.PHOTOS].open(photo_id, thumb=thumb)
    headers = {"Content-Type": stream.content_type, **streamed_response_headers(), "Cache-Control": PHOTO_CACHE_CONTROL}
    response = web.StreamResponse(headers=headers)
    try:
        await response.prepare(request)
        async for chunk in stream.chunks:
            await response.write(chunk)
        await response.write_eof()
    finally:
        await stream.chunks.aclose()
    return response


async def photo(request: web.Request) -> web.StreamResponse:
    return await _serve(request, thumb=False)


async def photo_thumb(request: web.Request) -> web.StreamResponse:
    return await _serve(request, thumb=True)
