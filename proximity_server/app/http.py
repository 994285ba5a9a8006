"""Reading requests (JSON bodies, bearer credentials, field checks) and
writing JSON replies (``json_reply``).

Shared by every HTTP handler so that bad input is refused the same way
everywhere: 415 for a wrong media type or content coding, 413 for a body over
the limit (after decoding), 400 with a named code for bad JSON, a body that
does not decode, missing, unknown or wrongly typed fields, and 401 for a
credential whose bytes are not UTF-8.

Request bodies are decoded here, not by aiohttp's parser (the app is built
with ``auto_decompress=False``): the parser answers a coding it cannot decode
(``br`` without the optional library) in plain text before any middleware
runs, so the JSON error envelope could not be kept.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Collection
from typing import Any, Final

import orjson
from aiohttp import BodyPartReader, web

from protocol.codes import ErrorCode
from protocol.limits import unstorable
from proximity_server.features.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized, UnsupportedMediaType

MAX_JSON_BODY_BYTES: Final = 64 * 1024
JSON_CONTENT_TYPE: Final = "application/json"

# Content codings of a request body, and the zlib window for each: gzip, or
# deflate as RFC 9110 defines it (zlib-wrapped), with raw deflate (negative)
# accepted too since some clients send it. Any other coding is 415.
IDENTITY_CODING: Final = "identity"
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
ZLIB_WBITS: Final = zlib.MAX_WBITS
RAW_DEFLATE_WBITS: Final = -zlib.MAX_WBITS
DECODABLE_CODINGS: Final = ("gzip", "x-gzip", "deflate")
ZLIB_METHOD_DEFLATE: Final = 8  # the low nibble of a zlib stream's first byte
ZLIB_HEADER_CHECK: Final = 31  # a zlib header's two bytes are a multiple of it


def json_reply(status: int, body: object) -> web.Response:
    """A JSON response: ``body`` serialised with orjson."""
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON_CONTENT_TYPE)


def content_coding(request: web.Request) -> str:
    """The body's ``Content-Encoding``, lower-cased (``identity`` when absent)."""
    return request.headers.get("Content-Encoding", "").strip().lower() or IDENTITY_CODING


def _deflate_wbits(body: bytes) -> int:
    if len(body) >= 2 and body[0] & 0x0F == ZLIB_METHOD_DEFLATE and (body[0] << 8 | body[1]) % ZLIB_HEADER_CHECK == 0:
        return ZLIB_WBITS
    return RAW_DEFLATE_WBITS


def decode_body(body: bytes, coding: str, limit: int) -> bytes:
    """The body with its content coding removed: 415 for a coding other than
    gzip or deflate, 400 for bytes that do not decode, 413 past ``limit``."""
    if coding == IDENTITY_CODING:
        return body
    if coding not in DECODABLE_CODINGS:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {coding[:40]!r}: send gzip, deflate or an uncompressed body"
        )
    wbits = _deflate_wbits(body) if coding == "deflate" else GZIP_WBITS
    decompressor = zlib.decompressobj(wbits=wbits)
    try:
        decoded = decompressor.decompress(body, limit + 1)
    except zlib.error:
        raise BadRequest(f"the body does not decode as {coding}") from None
    if len(decoded) > limit:
        raise PayloadTooLarge(f"the decoded body may be at most {limit} bytes")
    if not decompressor.eof:
        raise BadRequest(f"the body does not decode as {coding}: it is truncated")
    return decoded


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
    body = decode_body(body, content_coding(request), MAX_JSON_BODY_BYTES)
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
    (for WebSocket clients that cannot set headers).

    A header whose bytes are not UTF-8 (aiohttp keeps them as surrogates, which
    nothing downstream can encode) is refused here with 401."""
    header = request.headers.get("Authorization")
    if header:
        _require_utf8(header)
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
        return None
    if query_param:
        value = request.query.get(query_param)
        if value:
            _require_utf8(value)
            return value
    return None


def _require_utf8(credential: str) -> None:
    try:
        credential.encode()
    except UnicodeEncodeError:
        raise Unauthorized("the credential is not valid UTF-8") from None


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
    if content_coding(request) != IDENTITY_CODING:
        raise UnsupportedMediaType("send the multipart body without a Content-Encoding")
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
