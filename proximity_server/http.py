"""Reading requests: JSON bodies, bearer credentials, field checks.

Shared by every HTTP handler so that bad input is refused the same way
everywhere: 415 for a wrong media type, 413 for a body over the limit, 400
with a named code for bad JSON, missing, unknown or wrongly typed fields.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import orjson
from aiohttp import web

from protocol.codes import ErrorCode
from proximity_server.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BODY_BYTES: Final = 64 * 1024
JSON_CONTENT_TYPE: Final = "application/json"


async def read_json_object(
    request: web.Request,
    *,
    required: Collection[str],
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """The body as a JSON object with exactly the allowed fields."""
    if request.content_type != JSON_CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the body as {JSON_CONTENT_TYPE}")
    if request.content_length is not None and request.content_length > MAX_JSON_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_JSON_BODY_BYTES} bytes")
    body = await _read_limited(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON", code=ErrorCode.BAD_JSON) from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object", code=ErrorCode.BAD_JSON)
    missing = [name for name in required if name not in data]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}", code=ErrorCode.INVALID_FIELD)
    unknown = [name for name in data if name not in required and name not in optional]
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in sorted(unknown)[:5])
        raise BadRequest(f"unknown field(s): {shown}", code=ErrorCode.UNKNOWN_FIELD)
    return data


async def _read_limited(request: web.Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(MAX_JSON_BODY_BYTES):
        size += len(chunk)
        if size > MAX_JSON_BODY_BYTES:
            raise PayloadTooLarge(f"the body may be at most {MAX_JSON_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_str(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string", code=ErrorCode.INVALID_FIELD)
    return value


def bearer_token(request: web.Request, *, query_param: str | None = None) -> str | None:
    """The credential from ``Authorization: Bearer``, or from a query parameter
    (for WebSocket clients that cannot set headers)."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
        return None
    if query_param:
        value = request.query.get(query_param)
        if value:
            return value
    return None
