"""The command table shared by both sockets: field checks, one error mapping,
the strike counter on the connection."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from protocol.codes import CloseCode
from protocol.limits import BAD_FRAMES_BEFORE_CLOSE
from protocol.messages import Command
from proximity_server.features.errors import Unauthorized
from proximity_server.realtime.commands import Commands, CommandSpec
from proximity_server.realtime.hub import Connection
from tests.realtime.fakes import FakeConn


async def echo(conn: Connection, command: Command) -> Any:
    return command.fields


async def refuse(conn: Connection, command: Command) -> Any:
    raise Unauthorized("no")


async def down(conn: Connection, command: Command) -> Any:
    raise RedisConnectionError("gone")


async def broken(conn: Connection, command: Command) -> Any:
    raise KeyError("bug")


TABLE = Commands[Connection](
    {
        "echo": CommandSpec(echo, strings=("name",), required=("n",)),
        "refuse": CommandSpec(refuse, close_on_refusal=CloseCode.AUTH_EXPIRED),
        "down": CommandSpec(down, close_on_refusal=CloseCode.AUTH_EXPIRED),
        "broken": CommandSpec(broken),
    }
)


async def run(conn: FakeConn, frame: dict[str, Any]) -> dict[str, Any]:
    command = TABLE.read(conn, orjson.dumps(frame))
    assert command is not None
    await TABLE.execute(conn, conn, command)
    reply: dict[str, Any] = conn.sent()[-1]
    return reply


async def test_fields_are_checked_strings_first_then_presence() -> None:
    conn = FakeConn()
    assert (await run(conn, {"type": "echo", "id": 1, "n": 1}))["error"]["message"] == (
        "'name' must be a non-empty string"
    )
    assert (await run(conn, {"type": "echo", "id": 2, "name": "x"}))["error"] == {
        "code": "invalid_field",
        "message": "missing field(s): n",
    }
    assert await run(conn, {"type": "echo", "id": 3, "name": "x", "n": 0}) == {
        "type": "result",
        "id": 3,
        "ok": True,
        "result": {"name": "x", "n": 0},
    }
    assert conn.strikes == 0  # a refused command is not a bad frame


async def test_one_error_mapping_for_every_command() -> None:
    conn = FakeConn()
    assert (await run(conn, {"type": "down", "id": 1}))["error"]["code"] == "unavailable"
    assert not conn.closed  # only a refusal closes, not an outage
    assert (await run(conn, {"type": "broken", "id": 2}))["error"] == {"code": "internal", "message": "internal error"}
    assert (await run(conn, {"type": "refuse", "id": 3}))["error"] == {"code": "unauthorized", "message": "no"}
    assert conn.close_codes == [CloseCode.AUTH_EXPIRED]


def test_ping_is_answered_and_bad_frames_strike_until_1008() -> None:
    conn = FakeConn()
    assert TABLE.read(conn, b'{"type":"ping","id":"p"}') is None
    assert conn.sent() == [{"type": "result", "id": "p", "ok": True, "result": {"pong": True}}]
    for n in range(1, BAD_FRAMES_BEFORE_CLOSE + 1):
        bad = b"{nope" if n % 2 else b'{"type":"nope","id":1}'
        assert TABLE.read(conn, bad) is None
        assert conn.strikes == n
        assert conn.closed is (n == BAD_FRAMES_BEFORE_CLOSE)
    assert conn.close_codes == [CloseCode.POLICY_VIOLATION]
    assert conn.sent()[2] == {
        "type": "result",
        "id": 1,
        "ok": False,
        "error": {"code": "unknown_command", "message": "unknown command 'nope'"},
    }


@pytest.mark.parametrize("name", ["echo", "refuse", "ping"])
def test_the_table_knows_its_commands_and_ping(name: str) -> None:
    assert name in TABLE.known
