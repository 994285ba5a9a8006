"""GET /conversations, GET and POST /conversations/{conversation_id}/messages,
POST /conversations/{conversation_id}/read."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from proximity_server.app import state as keys
from proximity_server.app.auth import authenticated_user
from proximity_server.app.http import json_reply, path_uuid, read_json_object
from proximity_server.features.pagination import page_limit

CONVERSATION: Final = "conversation"


async def list_conversations(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    limit = page_limit(request.query)
    page = await request.app[keys.CONVERSATIONS].inbox(user.user_id, limit, request.query.get("cursor"))
    return json_reply(200, page)


async def list_messages(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    conversation_id = path_uuid(request, "conversation_id", CONVERSATION)
    limit = page_limit(request.query)
    page = await request.app[keys.CONVERSATIONS].messages(user.user_id, conversation_id, limit, request.query)
    return json_reply(200, page)


async def send_message(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    conversation_id = path_uuid(request, "conversation_id", CONVERSATION)
    data = await read_json_object(request, required=("client_id", "text"))
    sent = await request.app[keys.CONVERSATIONS].send(user.user_id, conversation_id, data)
    return json_reply(201 if sent.created else 200, sent.message)


async def mark_read(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    conversation_id = path_uuid(request, "conversation_id", CONVERSATION)
    data = await read_json_object(request, required=("up_to",))
    return json_reply(200, await request.app[keys.CONVERSATIONS].mark_read(user.user_id, conversation_id, data))
