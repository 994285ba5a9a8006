"""Error codes and WebSocket close codes, named once.

HTTP errors and WebSocket error frames share the same ``code`` strings so a
client handles them in one place.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode:
    """The ``error.code`` strings a client can see."""

    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_FIELD = "unknown_field"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    BAD_FRAME = "bad_frame"
    UNKNOWN_COMMAND = "unknown_command"


class CloseCode(IntEnum):
    """WebSocket close codes the server sends."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down
    POLICY_VIOLATION = 1008  # repeated bad frames
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SLOW_CONSUMER = 4008  # outgoing queue overflowed
    RESYNC = 4009  # durable events could not be delivered in order: reconnect and resume
    AUTH_EXPIRED = 4401  # credential expired or revoked
    BANNED = 4403  # the account was banned: do not reconnect; sign out
    SESSION_EXPIRED = 4410  # the proximity session behind the socket ended


CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "bye",
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.POLICY_VIOLATION: "too many bad frames",
    CloseCode.MESSAGE_TOO_BIG: "frame too large",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SLOW_CONSUMER: "slow consumer",
    CloseCode.RESYNC: "resync: reconnect and resume",
    CloseCode.AUTH_EXPIRED: "credential expired",
    CloseCode.BANNED: "banned",
    CloseCode.SESSION_EXPIRED: "session expired",
}
