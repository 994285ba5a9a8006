"""Reading requests: JSON bodies, bearer credentials, field checks.

Shared by every HTTP handler so that bad input is refused the same way
everywhere: 415 for a wrong media type, 413 for a body over the limit, 400
with a named code for bad JSON, missing, unknown or wrongly typed fields.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, Final

import orjson
from aiohttp import BodyPartReader, web

from protocol.codes import ErrorCode
from protocol.limits import unstorable
from proximity_server.features.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BODY_BYTES: Final = 64 * 1024
JSON_CONTENT_TYPE: Final = "application/json"


async def read_json_value(request: web.Request) -> Any:
    """The body as any JSON value (e.g. a list), refused if it cannot be stored."""
    if request.content_type != JSON_CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the body as {JSON_CONTENT_TYPE}")
    if request.content_length is not None and request.content_length > MAX_JSON_BODY_BYTES:
        raise PayloadTooLarge(f"the body may be at most {MAX_JSON_BODY_BYTES} bytes")
    try:
        body = await request.read()  # the app's client_max_size is MAX_JSON_BODY_BYTES
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body may be at most {MAX_JSON_BODY_BYTES} bytes") from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON", code=ErrorCode.BAD_JSON) from None
    problem = unstorable(data)
    if problem is not None:
        raise BadRequest(problem, code=ErrorCode.INVALID_FIELD)
    return data


async def read_json_object(
    request: web.Request,
    *,
    required: Collection[str],
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """The body as a JSON object with exactly the allowed fields."""
    data = await read_json_value(request)
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


def path_uuid(request: web.Request, name: str, what: str) -> str:
    """A UUID path parameter in canonical form; a malformed one is 404 ``what``."""
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise NotFound(f"no such {what}") from None


MULTIPART_CONTENT_TYPE: Final = "multipart/form-data"
MULTIPART_CHUNK_BYTES: Final = 64 * 1024
# Room for boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD_BYTES: Final = 16 * 1024


async def read_multipart_file(request: web.Request, field: str, limit: int) -> bytes:
    """The bytes of one ``multipart/form-data`` field, read in chunks and
    refused with 413 as soon as they pass ``limit`` (the app-wide
    ``client_max_size`` is for JSON bodies and does not apply here)."""
    if request.content_type != MULTIPART_CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the file as {MULTIPART_CONTENT_TYPE} with a '{field}' field")
    too_large = PayloadTooLarge(f"the file may be at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit + MULTIPART_OVERHEAD_BYTES:
        raise too_large
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != field:
                raise BadRequest(f"send exactly one field, '{field}'", code=ErrorCode.UNKNOWN_FIELD)
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(MULTIPART_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
            return b"".join(chunks)
    except (ValueError, AssertionError, RuntimeError):
        raise BadRequest("the multipart body is malformed") from None
    raise BadRequest(f"missing field '{field}'", code=ErrorCode.INVALID_FIELD)
