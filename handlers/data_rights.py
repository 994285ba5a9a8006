"""DELETE /me (erasure) and the data export: /me/export, /me/export/{export_id}[/download]."""

from __future__ import annotations

import time

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import AuthenticatedUser, authenticated_user, client_ip
from proximity_server.app.http import json_reply, path_uuid, read_json_object, require_str
from proximity_server.app.middlewares import streamed_response_headers
from proximity_server.features.export import ZIP_CONTENT_TYPE


async def _reauthenticated(request: web.Request) -> tuple[AuthenticatedUser, str]:
    """The signed-in user and the password they sent again; counted like a login."""
    limiter = request.app[keys.RATE_LIMITER]
    await limiter.check_auth_ip(client_ip(request), int(time.time() * 1000))
    user = await authenticated_user(request)
    await limiter.check_reauth_user(user.user_id, int(time.time() * 1000))
    data = await read_json_object(request, required=("password",))
    return user, require_str(data, "password")


async def erase_me(request: web.Request) -> web.Response:
    user, password = await _reauthenticated(request)
    await request.app[keys.ERASURE].erase(user.user_id, password)
    return web.Response(status=204)


async def start_export(request: web.Request) -> web.Response:
    user, password = await _reauthenticated(request)
    return json_reply(202, await request.app[keys.EXPORT].start(user.user_id, password))


async def export_status(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    export_id = path_uuid(request, "export_id", "export")
    return json_reply(200, await request.app[keys.EXPORT].status(user.user_id, export_id))


async def download_export(request: web.Request) -> web.StreamResponse:
    """The zip, streamed from storage chunk by chunk, to its owner only."""
    user = await authenticated_user(request)
    export_id = path_uuid(request, "export_id", "export")
    size, chunks = await request.app[keys.EXPORT].download(user.user_id, export_id)
    headers = {
        "Content-Type": ZIP_CONTENT_TYPE,
        "Content-Disposition": f'attachment; filename="export-{export_id}.zip"',
        "Cache-Control": "private, no-store",
        **streamed_response_headers(),
    }
    response = web.StreamResponse(headers=headers)
    if size is not None:
        response.content_length = size
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    finally:
        await chunks.aclose()
    return response
