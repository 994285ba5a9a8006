"""Middlewares: request id + access log + security headers, and the error envelope.

Log lines never carry anything that links to a person: a path parameter that
is a BLE token, and query parameters that carry credentials, are logged
masked (their first characters and an ellipsis); a path no route matched is
logged as its first segment only.

Every error leaves as ``{"error": {"code", "message"}}`` with the right
status; an unexpected exception is logged with its traceback and answered
with a bare 500, never the traceback itself. A backing service that is down
gives 503.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from protocol.codes import ErrorCode
from proximity_server.app import state as keys
from proximity_server.features.errors import INTERNAL_MESSAGE, as_api_error
from proximity_server.runtime.logs import request_id_var
from proximity_server.runtime.metrics import UNMATCHED_ROUTE
from store.errors import UNAVAILABLE_ERRORS

# Re-exported for realtime/user_socket.py until it imports store.errors itself.
__all__ = ["UNAVAILABLE_ERRORS"]

log = logging.getLogger("proximity_server.access")
error_log = logging.getLogger("proximity_server.errors")

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Path parameters and query parameters logged masked.
SENSITIVE_PATH_PARAMS: Final = frozenset({"ble_token"})
SENSITIVE_QUERY_PARAMS: Final = frozenset({"session_id", "access_token", "refresh_token", "token", "email", "password"})
MASK_KEEP_CHARS: Final = 2
MASK: Final = "…"
_VALID_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_HTTP_CODES: Final = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}


def streamed_response_headers() -> dict[str, str]:
    """The headers ``request_context`` adds to a response it gets unprepared
    (security headers and the request id), for a handler that streams its
    response and so prepares it itself."""
    headers = dict(SECURITY_HEADERS)
    request_id = request_id_var.get()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def mask(value: str) -> str:
    """Enough of a value to tell two apart in a log, not enough to use or link it."""
    return value[:MASK_KEEP_CHARS] + MASK


def loggable_path(request: web.Request) -> str:
    """The request's path with BLE tokens masked; an unmatched path is cut to its first segment."""
    path = request.path
    if request.match_info.route.resource is None:
        head, sep, rest = path.lstrip("/").partition("/")
        return f"/{head}/{MASK}" if sep and rest else path
    for name in SENSITIVE_PATH_PARAMS:
        value = request.match_info.get(name)
        if value:
            path = path.replace(value, mask(value))
    return path


def loggable_query(request: web.Request) -> str | None:
    """The query string with credential-bearing parameters masked (None if there is none)."""
    if not request.query_string:
        return None
    parts = []
    for name, value in request.query.items():
        shown = mask(value) if name.lower() in SENSITIVE_QUERY_PARAMS else value
        parts.append(f"{name}={shown}")
    return "&".join(parts)


def make_request_context(access_log: bool) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _VALID_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if not response.prepared:
                response.headers[REQUEST_ID_HEADER] = request_id
                response.headers.update(SECURITY_HEADERS)
            return response
        finally:
            elapsed = time.perf_counter() - started
            metrics = request.app.get(keys.METRICS)
            if metrics is not None:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else UNMATCHED_ROUTE
                metrics.requests.observe(route, request.method, status, elapsed)
            if access_log:
                fields: dict[str, object] = {
                    "method": request.method,
                    "path": loggable_path(request),
                    "status": status,
                    "ms": round(elapsed * 1000, 3),
                    "remote": request.remote,
                }
                query = loggable_query(request)
                if query is not None:
                    fields["query"] = query
                log.info("request", extra=fields)
            request_id_var.reset(token)

    return request_context


@web.middleware
async def error_envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestPayloadError:
        # The body broke off or its transfer coding is malformed: the client's fault.
        return error_response(400, ErrorCode.BAD_REQUEST, "the request body could not be read")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ErrorCode.BAD_REQUEST)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, exc.reason, headers)
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            error_log.exception("unhandled error", extra={"path": loggable_path(request)})
            return error_response(500, ErrorCode.INTERNAL, INTERNAL_MESSAGE)
        if error is not exc:  # a backing service is down: worth a warning, not a traceback
            error_log.warning("backing service unavailable", extra={"error": repr(exc), "path": loggable_path(request)})
        return error_response(error.status, error.code, error.message, error.headers)
