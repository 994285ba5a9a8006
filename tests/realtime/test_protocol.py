"""The wire format on known bytes, and the command envelope."""

from __future__ import annotations

import pytest

from protocol.codec import JSON, MSGPACK, DecodeError, codec_for
from protocol.messages import FrameError, Nudge, nudge_text, parse_command

NUDGE = Nudge(("music", "tech"), nudge_text(("music", "tech"))).to_wire()


def test_json_known_bytes() -> None:
    assert JSON.encode({"type": "nudge", "shared_interests": ["tech"]}) == (
        b'{"type":"nudge","shared_interests":["tech"]}'
    )
    assert JSON.decode(b'{"type":"ping","id":1}') == {"type": "ping", "id": 1}


def test_msgpack_known_bytes() -> None:
    encoded = MSGPACK.encode({"type": "ping", "id": 1})
    assert encoded == b"\x82\xa4type\xa4ping\xa2id\x01"
    assert MSGPACK.decode(encoded) == {"type": "ping", "id": 1}
    assert MSGPACK.decode(MSGPACK.encode(NUDGE)) == NUDGE


def test_codec_selection() -> None:
    assert codec_for("proximity.msgpack") is MSGPACK
    assert codec_for("proximity.json") is JSON
    assert codec_for(None) is JSON


@pytest.mark.parametrize(
    ("codec", "data"),
    [(JSON, b"{nope"), (JSON, b"\xff"), (MSGPACK, b"\xc1"), (MSGPACK, b"\x92\x01"), (MSGPACK, "text frame")],
)
def test_bad_frames_raise_decode_error(codec: object, data: bytes | str) -> None:
    with pytest.raises(DecodeError):
        codec.decode(data)  # type: ignore[attr-defined]


def test_nudge_text() -> None:
    assert nudge_text(["tech"]) == "Someone nearby shares your interest in tech."
    assert nudge_text(["devops", "hardstyle"]) == "Someone nearby shares your interest in devops and hardstyle."
    assert nudge_text(["a", "b", "c"]) == "Someone nearby shares your interest in a, b and c."


def test_command_envelope() -> None:
    known = frozenset({"ping"})
    command = parse_command({"type": "ping", "id": "x", "extra": 1}, known)
    assert (command.type, command.id, command.fields) == ("ping", "x", {"extra": 1})
    bad: object
    for bad in ([], {"id": 1}, {"type": 5, "id": 1}, {"type": "ping"}, {"type": "ping", "id": True}):
        with pytest.raises(FrameError):
            parse_command(bad, known)
    with pytest.raises(FrameError) as info:
        parse_command({"type": "nope", "id": 3}, known)
    assert info.value.code == "unknown_command"
    assert info.value.command_id == 3


def test_unstorable_values_are_named() -> None:
    from protocol.limits import INT64_MAX, unstorable

    assert unstorable({"a": ["x", 1, 2.5, True, None, {"b": INT64_MAX}]}) is None
    assert unstorable({"a": "x\x00y"}) == "text may not contain NUL characters"
    assert unstorable({"k\x00": 1}) == "text may not contain NUL characters"
    assert unstorable([[[[INT64_MAX + 1]]]]) == "integers must fit in 64 bits"
    assert unstorable({"n": float("nan")}) == "numbers must be finite"
    deep: object = 1
    for _ in range(10_000):
        deep = [deep]
    assert unstorable(deep) is None  # no recursion limit
    with pytest.raises(FrameError) as info:
        parse_command({"type": "ping", "id": 9, "text": "a\x00"}, frozenset({"ping"}))
    assert info.value.code == "invalid_field" and info.value.command_id == 9
