"""Typed API errors. Handlers and logic raise them; the error middleware turns
each into ``{"error": {"code", "message"}}`` with its HTTP status, and the
sockets into an error result with the same code.

``as_api_error`` is the one exception -> error mapping for every transport:
an ApiError as is, a backing service that is down as ServiceUnavailable,
anything else None (the caller logs it and answers internal error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from protocol.codes import ErrorCode
from store.errors import UNAVAILABLE_ERRORS

UNAVAILABLE_MESSAGE: Final = "a backing service is unavailable; retry shortly"
INTERNAL_MESSAGE: Final = "internal error"


class ApiError(Exception):
    status = 400
    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400
    code = ErrorCode.BAD_REQUEST


class Unauthorized(ApiError):
    status = 401
    code = ErrorCode.UNAUTHORIZED

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NotFound(ApiError):
    status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(ApiError):
    status = 409
    code = ErrorCode.CONFLICT


class PayloadTooLarge(ApiError):
    status = 413
    code = ErrorCode.TOO_LARGE


class UnsupportedMediaType(ApiError):
    status = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class RateLimited(ApiError):
    status = 429
    code = ErrorCode.RATE_LIMITED


class ServiceUnavailable(ApiError):
    status = 503
    code = ErrorCode.UNAVAILABLE

    def __init__(self, message: str = UNAVAILABLE_MESSAGE) -> None:
        super().__init__(message)


WEAK_PASSWORD_CODE = "weak_password"  # noqa: S105 (an error code)


class WeakPassword(BadRequest):
    code = WEAK_PASSWORD_CODE


def as_api_error(exc: BaseException) -> ApiError | None:
    """The error a client is told about ``exc``: an ApiError as is; a backing
    service that is down or unreachable (``store.errors.UNAVAILABLE_ERRORS``)
    as ServiceUnavailable; None for anything else, which the caller logs with
    its traceback and answers as internal error (500, ``internal``)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UNAVAILABLE_ERRORS):
        return ServiceUnavailable()
    return None
