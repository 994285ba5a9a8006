"""Typed API errors. Handlers and logic raise them; the error middleware turns
each into ``{"error": {"code", "message"}}`` with its HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

from protocol.codes import ErrorCode


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


WEAK_PASSWORD_CODE = "weak_password"  # noqa: S105 (an error code)


class WeakPassword(BadRequest):
    code = WEAK_PASSWORD_CODE
