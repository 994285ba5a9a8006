"""The internal bus envelope: what processes publish to each other on Redis.

Every payload on a token's or a user's channel is ``<kind>|<body>``:

    event|{"event_id": 7, "type": "message", ...}   a durable event (store/events.py)
    typing|{"type": "typing", ...}                  ephemeral signals: the body is
    presence|{"type": "presence", ...}              the JSON of the wire message
    nudge|devops,hardstyle                          a proximity nudge: sorted categories
    logout|1718000000000                            tokens issued before this ms are revoked

This module is the one place the envelope is written and read. The Lua
scripts of the hot path cannot import it, so the store passes them the
prefix (:func:`prefix`) as an argument; a test checks that what they publish
decodes here. Nothing here does I/O or imports aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from protocol.messages import Nudge, nudge_text

SEPARATOR: Final = "|"

EVENT: Final = "event"
TYPING: Final = "typing"
PRESENCE: Final = "presence"
NUDGE: Final = "nudge"
LOGOUT: Final = "logout"
BAN: Final = "ban"

KINDS: Final = frozenset({EVENT, TYPING, PRESENCE, NUDGE, LOGOUT, BAN})
# Control kinds: acted on by the user socket, never sent to a client as such.
CONTROL_KINDS: Final = frozenset({LOGOUT, BAN})
# Kinds whose body is the JSON of the wire message itself.
JSON_KINDS: Final = frozenset({EVENT, TYPING, PRESENCE})


class BusError(ValueError):
    """A payload that is not ``<kind>|<body>`` with a known kind."""


def prefix(kind: str) -> str:
    """``kind|``: what a payload of ``kind`` starts with (for the Lua scripts)."""
    if kind not in KINDS:
        raise BusError(f"unknown bus kind {kind!r}")
    return kind + SEPARATOR


def encode(kind: str, body: bytes) -> bytes:
    return prefix(kind).encode() + body


def decode(raw: str | bytes) -> tuple[str, bytes]:
    """Split a payload into its kind and body; raises BusError."""
    data = raw.encode() if isinstance(raw, str) else raw
    kind, _, body = data.partition(SEPARATOR.encode())
    name = kind.decode("ascii", errors="replace")
    if name not in KINDS:
        raise BusError(f"not a bus payload of a known kind: {name[:20]!r}")
    return name, body


# -- typed producers ------------------------------------------------------------------


def event(wire: Mapping[str, Any]) -> bytes:
    """A durable event: its flat wire object (``event_id``, ``type``, ...)."""
    return encode(EVENT, orjson.dumps(wire))


def typing(signal: Mapping[str, Any]) -> bytes:
    return encode(TYPING, orjson.dumps(signal))


def presence(signal: Mapping[str, Any]) -> bytes:
    return encode(PRESENCE, orjson.dumps(signal))


def nudge(categories: Iterable[str]) -> bytes:
    return encode(NUDGE, ",".join(categories).encode())


def logout(before_ms: int) -> bytes:
    return encode(LOGOUT, str(int(before_ms)).encode())


def ban(before_ms: int) -> bytes:
    """The user was banned: their sockets opened before ``before_ms`` close with 4403."""
    return encode(BAN, str(int(before_ms)).encode())


# -- the consumer ---------------------------------------------------------------------


def to_message(raw: str | bytes) -> dict[str, Any] | None:
    """The wire message a payload stands for; None for one that is not valid.

    A logout becomes ``{"type": "logout", "before_ms": <ms>}``: a control
    message for the user socket, never sent to a client as such.
    """
    try:
        kind, body = decode(raw)
    except BusError:
        return None
    if kind == NUDGE:
        categories = tuple(body.decode().split(","))
        return Nudge(categories, nudge_text(categories)).to_wire()
    if kind in JSON_KINDS:
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return message if isinstance(message, dict) else None
    if kind in CONTROL_KINDS and body.isdigit():
        return {"type": kind, "before_ms": int(body)}
    return None
