"""Page size and opaque cursors for every list endpoint.

``?limit=`` is 1..``MAX_PAGE_LIMIT`` (default ``DEFAULT_PAGE_LIMIT``).
A cursor is base64url (unpadded) of ``"<kind>:<part>:<part>…"``; the kind
stops a cursor from one list being replayed on another. Anything else is
400 ``bad_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeVar

from protocol.codes import ErrorCode
from proximity_server.features.errors import BadRequest

RowT = TypeVar("RowT")

DEFAULT_PAGE_LIMIT: Final = 20
MAX_PAGE_LIMIT: Final = 100
MAX_CURSOR_LENGTH: Final = 256
BAD_CURSOR_CODE: Final = "bad_cursor"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE_LIMIT:
        raise BadRequest(f"'limit' must be an integer from 1 to {MAX_PAGE_LIMIT}", code=ErrorCode.INVALID_FIELD)
    return value


def bad_cursor() -> BadRequest:
    return BadRequest("'cursor' is not a cursor this server handed out", code=BAD_CURSOR_CODE)


def encode_cursor(kind: str, *parts: str) -> str:
    return base64.urlsafe_b64encode(":".join((kind, *parts)).encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, kind: str, size: int) -> Sequence[str]:
    """The ``size`` parts of a cursor of this ``kind``; 400 otherwise."""
    if not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad_cursor() from None
    found, *parts = raw.split(":")
    if found != kind or len(parts) != size:
        raise bad_cursor()
    return parts


def micros(value: dt.datetime) -> str:
    delta = value - _EPOCH
    return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def from_micros(value: str) -> dt.datetime:
    try:
        return _EPOCH + dt.timedelta(microseconds=int(value))
    except (ValueError, OverflowError):
        raise bad_cursor() from None


def cursor_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise bad_cursor() from None


def cursor_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise bad_cursor() from None
    if number < 0:
        raise bad_cursor()
    return number


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def time_id_position(cursor: str | None, kind: str) -> tuple[dt.datetime, str] | None:
    """Where a ``(time, id)`` keyset cursor says the next page starts (None: the first page)."""
    if cursor is None:
        return None
    at, item_id = decode_cursor(cursor, kind, 2)
    return from_micros(at), cursor_uuid(item_id)


def time_id_page(
    rows: Sequence[RowT], limit: int, kind: str, position: Callable[[RowT], tuple[dt.datetime, str]]
) -> tuple[Sequence[RowT], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one."""
    page = rows[:limit]
    if len(rows) <= limit:
        return page, None
    at, item_id = position(page[-1])
    return page, encode_cursor(kind, micros(at), item_id)
