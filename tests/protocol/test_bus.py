"""The internal bus envelope on known bytes."""

from __future__ import annotations

import pytest

from protocol import bus


def test_known_bytes_of_each_kind() -> None:
    assert bus.event({"event_id": 7, "type": "match"}) == b'event|{"event_id":7,"type":"match"}'
    assert bus.typing({"type": "typing", "user_id": "u"}) == b'typing|{"type":"typing","user_id":"u"}'
    assert bus.presence({"type": "presence", "online": True}) == b'presence|{"type":"presence","online":true}'
    assert bus.nudge(["devops", "hardstyle"]) == b"nudge|devops,hardstyle"
    assert bus.logout(1718000000000) == b"logout|1718000000000"
    assert bus.encode(bus.NUDGE, b"tech") == b"nudge|tech"
    assert bus.prefix(bus.NUDGE) == "nudge|"


def test_decode_splits_kind_and_body_from_str_or_bytes() -> None:
    assert bus.decode(b'event|{"a":1}') == ("event", b'{"a":1}')
    assert bus.decode("nudge|a,b") == ("nudge", b"a,b")
    assert bus.decode("logout|12|3") == ("logout", b"12|3")  # only the first separator splits
    for bad in ("", "nope|x", b"\xff|x", "eventx"):
        with pytest.raises(bus.BusError):
            bus.decode(bad)
    with pytest.raises(bus.BusError):
        bus.prefix("nope")


def test_to_message_gives_the_wire_message() -> None:
    assert bus.to_message(bus.nudge(["devops", "hardstyle"])) == {
        "type": "nudge",
        "shared_interests": ["devops", "hardstyle"],
        "message": "Someone nearby shares your interest in devops and hardstyle.",
    }
    assert bus.to_message('event|{"event_id":1,"type":"read"}') == {"event_id": 1, "type": "read"}
    assert bus.to_message(bus.typing({"type": "typing"})) == {"type": "typing"}
    assert bus.to_message(bus.logout(5)) == {"type": "logout", "before_ms": 5}


@pytest.mark.parametrize("raw", ["event|{bad", "event|[1]", "logout|soon", "logout|", "unknown|{}", "presence|"])
def test_to_message_drops_what_it_cannot_read(raw: str) -> None:
    assert bus.to_message(raw) is None
