"""The hub routes raw payloads; fan-outs decode them and decide per socket."""

from __future__ import annotations

from protocol import bus
from protocol.codec import MSGPACK
from proximity_server.realtime.fanout import Fanout
from proximity_server.realtime.hub import Connection, Hub
from tests.realtime.fakes import FakeConn


async def _nothing(channel: str) -> None:
    return None


async def test_the_hub_hands_raw_payloads_to_the_fanout_routed_for_the_channel() -> None:
    seen: list[tuple[str, str, int]] = []

    def recorder(channel: str, raw: str, conns: tuple[Connection, ...]) -> int:
        seen.append((channel, raw, len(conns)))
        return len(conns)

    hub = Hub(_nothing, _nothing, fanout=Fanout())
    hub.route("ev:user:", recorder)
    user, token = FakeConn(), FakeConn(codec=MSGPACK)
    await hub.join("ev:user:1", user)
    await hub.join("ev:token:t", token)
    hub.deliver("ev:user:1", "anything|at all")  # the hub never reads it
    hub.deliver("ev:token:t", bus.nudge(["tech"]).decode())
    hub.deliver("ev:token:t", bus.logout(5).decode())  # a control message is never sent to a client
    hub.deliver("ev:token:nobody", bus.nudge(["tech"]).decode())
    assert seen == [("ev:user:1", "anything|at all", 1)]
    assert user.frames == []
    assert [MSGPACK.decode(f) for f in token.frames] == [bus.to_message(bus.nudge(["tech"]))]
    assert hub.events_delivered == 2


async def test_a_fanout_decides_per_socket_and_encodes_once_per_codec() -> None:
    a, b, c = FakeConn(), FakeConn(), FakeConn(codec=MSGPACK)
    fanout = Fanout(lambda conn, message: conn is not b)
    assert fanout("ch", bus.typing({"type": "typing"}).decode(), (a, b, c)) == 2
    assert a.frames == [b'{"type":"typing"}'] and b.frames == []
    assert MSGPACK.decode(c.frames[0]) == {"type": "typing"}
    assert fanout("ch", "nonsense", (a,)) == 0


async def test_close_listeners_hear_of_every_socket_that_goes_away() -> None:
    gone: list[Connection] = []
    hub = Hub(_nothing, _nothing, fanout=Fanout())
    hub.on_close(gone.append)
    conn = FakeConn()
    await hub.join("ch", conn)
    hub._forget(conn)
    assert gone == [conn] and list(hub.connections("ch")) == []
