"""Typed WebSocket messages.

Every frame is a map with a ``type``. Client frames are commands
``{"type": <command>, "id": <str|int>, ...fields}``; each gets exactly one
reply ``{"type": "result", "id", "ok", "result" | "error"}``. Server events
(``nudge`` and friends) carry no ``id``.

Frames are decoded once, at the edge, by :func:`parse_command`; nothing past
it sees raw dicts from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from protocol.codes import ErrorCode
from protocol.limits import unstorable

MAX_COMMAND_ID_LENGTH: Final = 64


class FrameError(ValueError):
    """A client frame that cannot be accepted; ``code`` is an ErrorCode."""

    def __init__(self, code: str, message: str, command_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command_id = command_id


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded client command."""

    type: str
    id: str | int
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Nudge:
    shared_interests: tuple[str, ...]
    message: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": "nudge", "shared_interests": list(self.shared_interests), "message": self.message}


def nudge_text(categories: list[str] | tuple[str, ...]) -> str:
    """ "Someone nearby shares your interest in devops and hardstyle."""
    listed = categories[0] if len(categories) == 1 else ", ".join(categories[:-1]) + " and " + categories[-1]
    return f"Someone nearby shares your interest in {listed}."


def result_ok(command_id: str | int, result: Any = None) -> dict[str, Any]:
    return {"type": "result", "id": command_id, "ok": True, "result": result}


def result_error(command_id: str | int | None, code: str, message: str) -> dict[str, Any]:
    return {"type": "result", "id": command_id, "ok": False, "error": {"code": code, "message": message}}


def error_frame(code: str, message: str) -> dict[str, Any]:
    """An error not tied to a command (the frame could not be read at all)."""
    return {"type": "error", "error": {"code": code, "message": message}}


def _valid_id(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_COMMAND_ID_LENGTH


def parse_command(payload: object, known: frozenset[str]) -> Command:
    """Validate the command envelope; raises FrameError."""
    if not isinstance(payload, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "a frame must be an object with a 'type'")
    raw_id = payload.get("id")
    command_id = raw_id if _valid_id(raw_id) else None
    kind = payload.get("type")
    if not isinstance(kind, str):
        raise FrameError(ErrorCode.BAD_FRAME, "'type' must be a string", command_id)
    if command_id is None:
        raise FrameError(
            ErrorCode.BAD_FRAME,
            f"'id' must be a non-empty string of at most {MAX_COMMAND_ID_LENGTH} characters or an integer",
        )
    if kind not in known:
        raise FrameError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {kind[:40]!r}", command_id)
    fields = {k: v for k, v in payload.items() if k not in ("type", "id")}
    problem = unstorable(fields)
    if problem is not None:
        raise FrameError(ErrorCode.INVALID_FIELD, problem, command_id)
    assert isinstance(command_id, (str, int))
    return Command(type=kind, id=command_id, fields=fields)
