"""Client commands on a socket, for both sockets (WS /ws and WS /ws/{ble_token}).

A frame is decoded once (``Commands.read``): a frame that cannot be read, a
malformed envelope or an unknown command gets an error reply and counts as a
strike on the connection (``Connection.strikes``); at
``BAD_FRAMES_BEFORE_CLOSE`` strikes the socket is closed with 1008. ``ping``
is answered at once on every socket, authenticated or not.

Every other command is an entry of a table (``CommandSpec``): its handler and
the fields it needs. ``Commands.execute`` checks the fields, runs the handler
and sends exactly one ``result``; every exception becomes an error result in
one place (``features.errors.as_api_error``, as over HTTP).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from protocol.codec import DecodeError
from protocol.codes import CloseCode, ErrorCode
from protocol.limits import BAD_FRAMES_BEFORE_CLOSE
from protocol.messages import Command, FrameError, error_frame, parse_command, result_error, result_ok
from proximity_server.features.errors import INTERNAL_MESSAGE, ApiError, BadRequest, as_api_error
from proximity_server.realtime.hub import Connection

log = logging.getLogger(__name__)

PING: Final = "ping"

# What a handler is given besides the command: the socket, or the socket's
# state on a socket that has one (the user socket's).
Ctx = TypeVar("Ctx")


@dataclass(frozen=True, slots=True)
class CommandSpec(Generic[Ctx]):
    # Runs a command whose fields were checked; returns the result's body.
    run: Callable[[Ctx, Command], Awaitable[Any]]
    strings: tuple[str, ...] = ()  # fields that must be non-empty strings (checked first)
    required: tuple[str, ...] = ()  # fields that must be present
    # A command refused with an ApiError then closes the socket with this code.
    close_on_refusal: CloseCode | None = None

    def check(self, fields: Mapping[str, Any]) -> None:
        for name in self.strings:
            value = fields.get(name)
            if not isinstance(value, str) or not value:
                raise BadRequest(f"'{name}' must be a non-empty string", code=ErrorCode.INVALID_FIELD)
        missing = [n for n in self.required if n not in fields]
        if missing:
            raise BadRequest(f"missing field(s): {', '.join(missing)}", code=ErrorCode.INVALID_FIELD)


def strike(conn: Connection) -> None:
    """One more bad frame; too many close the socket (after the error replies)."""
    conn.strikes += 1
    if conn.strikes >= BAD_FRAMES_BEFORE_CLOSE:
        conn.close_soon(CloseCode.POLICY_VIOLATION, drop_queued=False)


class Commands(Generic[Ctx]):
    """A socket's table of commands (``ping`` is always there)."""

    def __init__(self, table: Mapping[str, CommandSpec[Ctx]]) -> None:
        self._table = dict(table)
        self.known: frozenset[str] = frozenset(self._table) | {PING}

    def read(self, conn: Connection, data: str | bytes) -> Command | None:
        """The command in a frame, or None when the frame was answered here
        (a ``ping``, or an error for a bad frame)."""
        try:
            command = parse_command(conn.codec.decode(data), self.known)
        except DecodeError as exc:
            conn.send_message(error_frame(ErrorCode.BAD_FRAME, str(exc)))
            strike(conn)
            return None
        except FrameError as exc:
            if exc.command_id is None:
                conn.send_message(error_frame(exc.code, exc.message))
            else:
                conn.send_message(result_error(exc.command_id, exc.code, exc.message))
            strike(conn)
            return None
        if command.type == PING:
            conn.send_message(result_ok(command.id, {"pong": True}))
            return None
        return command

    async def execute(self, conn: Connection, ctx: Ctx, command: Command) -> None:
        """Run a command of the table and send its one result, whatever happens."""
        await execute(conn, ctx, command, self._table[command.type])


async def execute(conn: Connection, ctx: Ctx, command: Command, spec: CommandSpec[Ctx]) -> None:
    """Run ``command`` as ``spec`` says, and send its one result, whatever happens."""
    try:
        spec.check(command.fields)
        result = await spec.run(ctx, command)
    except Exception as exc:
        error = as_api_error(exc)
        if error is None:
            log.exception("command failed", extra={"command": command.type})
            conn.send_message(result_error(command.id, ErrorCode.INTERNAL, INTERNAL_MESSAGE))
            return
        conn.send_message(result_error(command.id, error.code, error.message))
        if isinstance(exc, ApiError) and spec.close_on_refusal is not None:
            conn.close_soon(spec.close_on_refusal, drop_queued=False)
    else:
        conn.send_message(result_ok(command.id, result))
