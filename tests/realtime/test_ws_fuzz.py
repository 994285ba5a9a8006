"""Fuzzing both WebSockets with hypothesis: random JSON and msgpack values,
odd types, deep nesting, frames near and over the size limits, random text
and binary frames.

Property: every frame gets exactly one answer (a ``result``, an ``error``
frame) or the socket is closed with 1008 (bad frames) or 1009 (too big); no
answer is an ``internal`` error; a socket that is still open still answers a
ping; and afterwards ``/livez`` and a fresh socket work.

Hypothesis drives sync tests, so the app runs on its own uvloop loop in a
background thread (one app per test) and each example is a coroutine sent to
that loop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgpack
import orjson
import pytest
import uvloop
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from protocol.codec import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL
from proximity_server import create_app
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import Person, matched_pair
from tests.conftest import ADMIN_TOKEN, drop_test_namespace
from tests.helpers import bearer, open_session

T = TypeVar("T")

PROXIMITY_LIMIT = 16 * 1024
USER_LIMIT = 64 * 1024
RECEIVE_TIMEOUT = 5.0
ALLOWED_CLOSE = {1008, 1009}
USER_COMMANDS = ["auth", "send_message", "typing", "read", "resume", "refresh", "ping"]
FIELD_NAMES = ["conversation_id", "client_id", "text", "up_to", "last_event_id", "access_token", "id", "type"]
FUZZ = settings(
    max_examples=int(os.environ.get("WS_FUZZ_EXAMPLES", "100")),  # raise it for a longer local hunt
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the server on its own loop ------------------------------------------------------


@dataclass
class Live:
    loop: asyncio.AbstractEventLoop
    client: TestClient[Any, Any]
    ble_token: str
    session_id: str
    user: Person
    conversation_id: str

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture
def live(service_urls: tuple[str, str]) -> Iterator[Live]:
    database_url, redis_url = service_urls
    tag = secrets.token_hex(6)
    app_settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"t:{tag}:",
        db_schema=f"t_{tag}",
        admin_token=ADMIN_TOKEN,
        stats_flush_interval=3600.0,
        ws_heartbeat_seconds=5.0,
        access_log=False,
    ).with_overrides(
        **{**ACCOUNT_OVERRIDES, "rate_limit_api_per_minute": 100_000, "rate_limit_messages_per_minute": 100_000}
    )
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Live:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(app_settings)))
        await client.start_server()
        ble_token, session_id = await open_session(client, ["devops", "jazz"])
        user, _, matched = await matched_pair(client)
        return Live(loop, client, ble_token, session_id, user, matched["conversation_id"])

    state = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield state
    finally:
        state.run(state.client.close())
        state.run(drop_test_namespace(database_url, redis_url, app_settings.db_schema, app_settings.redis_prefix))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- strategies -------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


huge_text = st.integers(-64, 64).map(lambda d: "x" * (PROXIMITY_LIMIT - 16 + d))
deep = st.integers(1, 3000).map(nested)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20,
)
mp_scalars = st.one_of(
    json_scalars,
    st.floats(),  # NaN and infinities
    st.binary(max_size=64),
    st.integers(-(2**63), 2**64 - 1),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16)),
)
mp_keys = st.one_of(
    st.text(max_size=12),
    st.integers(-1000, 1000),
    st.binary(max_size=4),
    st.booleans(),
    st.none(),
    st.floats(),
)
mp_values = st.recursive(
    mp_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(mp_keys, inner, max_size=5).filter(
            lambda d: all(not isinstance(k, float) or k == k for k in d)
        ),
    ),
    max_leaves=20,
)


def command_like(values: st.SearchStrategy[Any], kinds: list[str]) -> st.SearchStrategy[dict[Any, Any]]:
    """Frames shaped like commands, so the parser and the handlers see them."""
    ids = st.one_of(st.integers(-(2**60), 2**60), st.text(max_size=70), values)
    return st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(kinds), values), "id": ids},
        optional={name: st.one_of(values, huge_text) for name in FIELD_NAMES[:6]},
    )


@dataclass(frozen=True)
class Frame:
    data: str | bytes
    note: str


def json_frames(kinds: list[str]) -> st.SearchStrategy[Frame]:
    def dumps(value: Any) -> Frame:
        try:
            return Frame(orjson.dumps(value).decode(), "json")
        except orjson.JSONEncodeError:  # too deep or an int orjson cannot write
            return Frame(_deep_json(value), "json-raw")

    return st.one_of(
        json_values.map(dumps),
        command_like(json_values, kinds).map(dumps),
        deep.map(dumps),
        st.tuples(huge_text, st.integers(0, 2**53)).map(lambda t: dumps({"type": "ping", "id": t[1], "pad": t[0]})),
        st.text(max_size=200).map(lambda s: Frame(s, "text")),
        st.binary(max_size=200).map(lambda b: Frame(b, "binary")),
        st.sampled_from(["NaN", "[1e999]", '{"type": "ping", "id": 1e400}', "\ud800", "[" * 5000, '"\\ud800"']).map(
            lambda s: Frame(s, "odd")
        ),
    )


def _deep_json(value: Any) -> str:
    import json

    try:
        return json.dumps(value)
    except (RecursionError, ValueError):
        return "[" * 3000 + "]" * 3000


def msgpack_frames(kinds: list[str]) -> st.SearchStrategy[Frame]:
    def packb(value: Any) -> Frame:
        try:
            return Frame(msgpack.packb(value, use_bin_type=True), "msgpack")
        except (ValueError, OverflowError, TypeError):  # too deep for the packer
            return Frame(b"\x91" * 5000 + b"\xc0", "msgpack-deep")

    return st.one_of(
        mp_values.map(packb),
        command_like(mp_values, kinds).map(packb),
        deep.map(packb),
        st.tuples(huge_text, st.integers(0, 2**53)).map(lambda t: packb({"type": "ping", "id": t[1], "pad": t[0]})),
        st.binary(max_size=200).map(lambda b: Frame(b, "binary")),
        st.text(max_size=200).map(lambda s: Frame(s, "text")),
        st.sampled_from(
            [
                b"\xd6\xff\x00\x00\x00\x00",  # a valid timestamp ext
                b"\xc7\x03\xff\x00\x00\x00",  # a timestamp ext of a bad length
                b"\xcb" + b"\x7f\xf8" + b"\x00" * 6,  # NaN
                b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
                b"\xdb\xff\xff\xff\xff",  # a string claiming 4 GiB
                b"\x81\x92\x01\x02\x01",  # a map keyed by an array
                b"\xc1",  # the reserved byte
            ]
        ).map(lambda b: Frame(b, "odd")),
    )


def frames_for(codec: str, kinds: list[str]) -> st.SearchStrategy[Frame]:
    return json_frames(kinds) if codec == "json" else msgpack_frames(kinds)


# -- the property -----------------------------------------------------------------


def encode(codec: str, message: dict[str, Any]) -> str | bytes:
    return orjson.dumps(message).decode() if codec == "json" else msgpack.packb(message, use_bin_type=True)


def decode(codec: str, msg: aiohttp.WSMessage) -> dict[str, Any]:
    if codec == "json":
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        value = orjson.loads(msg.data)
    else:
        assert msg.type is aiohttp.WSMsgType.BINARY, msg
        value = msgpack.unpackb(msg.data, raw=False)
    assert isinstance(value, dict), value
    return value


def valid_utf8_text(frame: Frame) -> bool:
    if isinstance(frame.data, bytes):
        return True
    try:
        frame.data.encode()
    except UnicodeEncodeError:
        return False
    return True


def too_big(frame: Frame, limit: int) -> bool:
    size = len(frame.data.encode("utf-8", "surrogatepass")) if isinstance(frame.data, str) else len(frame.data)
    return size > limit


async def answer(ws: aiohttp.ClientWebSocketResponse, codec: str) -> dict[str, Any] | int:
    """The next ``result`` or ``error`` frame, or the close code."""
    while True:
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code if ws.close_code is not None else -1
        assert msg.type is not aiohttp.WSMsgType.ERROR, msg
        body = decode(codec, msg)
        if body.get("type") in ("result", "error"):
            return body
        # server events (presence, nudges, typing) may interleave


async def send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    if isinstance(frame.data, bytes):
        await ws.send_bytes(frame.data)
    else:
        # lone surrogates cannot be sent as text; send their bytes as-is
        await ws.send_frame(frame.data.encode("utf-8", "surrogatepass"), aiohttp.WSMsgType.TEXT)


async def exercise(live: Live, url: str, headers: dict[str, str], codec: str, frames: list[Frame], limit: int) -> None:
    protocol = JSON_SUBPROTOCOL if codec == "json" else MSGPACK_SUBPROTOCOL
    ws = await live.client.ws_connect(url, headers=headers, protocols=(protocol,), max_msg_size=0)
    try:
        if url == "/ws":
            assert (await _ping(ws, codec)) is True
        auth_sent = False  # a failed 'auth' command closes the socket with 4401, after its result
        for frame in frames:
            auth_sent = auth_sent or _is_auth(frame, codec)
            await send(ws, frame)
            reply = await answer(ws, codec)
            if isinstance(reply, int):
                if too_big(frame, limit):
                    assert reply in (1008, 1009), (frame.note, reply)
                elif not valid_utf8_text(frame):
                    assert reply in (1007, 1008), (frame.note, reply)  # RFC 6455: invalid text payload
                else:
                    allowed = ALLOWED_CLOSE | ({4401} if auth_sent else set())
                    assert reply in allowed, (frame.note, reply, frame.data[:200])
                return
            assert not too_big(frame, limit), ("an oversized frame was answered", frame.note)
            if reply["type"] == "error":
                assert isinstance(reply["error"]["code"], str), reply
            else:
                assert set(reply) >= {"id", "ok"}, reply
                if not reply["ok"]:
                    assert reply["error"]["code"] != "internal", (frame.data[:300], reply)
        # the socket survived: it still works
        assert (await _ping(ws, codec)) in (True, 1008, 4401)
    finally:
        await ws.close()


def _decoded(frame: Frame, codec: str) -> Any:
    try:
        return orjson.loads(frame.data) if codec == "json" else msgpack.unpackb(frame.data, raw=False)
    except Exception:
        return None


def _is_auth(frame: Frame, codec: str) -> bool:
    value = _decoded(frame, codec)
    return isinstance(value, dict) and value.get("type") == "auth"


async def _ping(ws: aiohttp.ClientWebSocketResponse, codec: str) -> bool | int:
    if ws.closed:
        return ws.close_code or -1
    await send(ws, Frame(encode(codec, {"type": "ping", "id": "probe"}), "probe"))
    reply = await answer(ws, codec)
    if isinstance(reply, int):
        return reply
    return bool(reply.get("id") == "probe" and reply.get("ok") and reply["result"] == {"pong": True})


async def still_healthy(live: Live) -> None:
    resp = await live.client.get("/livez")
    assert resp.status == 200
    for codec in ("json", "msgpack"):
        protocol = JSON_SUBPROTOCOL if codec == "json" else MSGPACK_SUBPROTOCOL
        for url, headers in ((f"/ws/{live.ble_token}", bearer(live.session_id)), ("/ws", live.user.auth)):
            ws = await live.client.ws_connect(url, headers=headers, protocols=(protocol,))
            try:
                assert await _ping(ws, codec) is True
            finally:
                await ws.close()


codecs = st.sampled_from(["json", "msgpack"])


def test_proximity_socket_survives_random_frames(live: Live) -> None:
    url = f"/ws/{live.ble_token}"

    @FUZZ
    @given(data=st.data(), codec=codecs)
    def fuzz(data: st.DataObject, codec: str) -> None:
        frames = data.draw(st.lists(frames_for(codec, ["ping", "nudge", "result"]), min_size=1, max_size=7))
        live.run(exercise(live, url, bearer(live.session_id), codec, frames, PROXIMITY_LIMIT))

    fuzz()
    live.run(still_healthy(live))


def test_user_socket_survives_random_frames(live: Live) -> None:
    def aimed(codec: str) -> st.SearchStrategy[Frame]:
        """Commands at a real conversation of the user, with random fields."""
        fields = st.fixed_dictionaries(
            {"type": st.sampled_from(["send_message", "read", "typing", "resume"]), "id": st.integers(0, 1000)},
            optional={
                "client_id": st.one_of(st.text(max_size=70), json_scalars),
                "text": st.one_of(st.text(max_size=50), json_scalars, huge_text),
                "up_to": json_scalars,
                "last_event_id": json_scalars,
            },
        )
        return fields.map(lambda d: Frame(encode(codec, {**d, "conversation_id": live.conversation_id}), "aimed"))

    @FUZZ
    @given(data=st.data(), codec=codecs)
    def fuzz(data: st.DataObject, codec: str) -> None:
        frames = data.draw(
            st.lists(st.one_of(frames_for(codec, [*USER_COMMANDS, "nudge"]), aimed(codec)), min_size=1, max_size=7)
        )
        live.run(exercise(live, "/ws", live.user.auth, codec, frames, USER_LIMIT))

    fuzz()
    live.run(still_healthy(live))


# -- what the fuzzing found: out-of-range and NUL input once reached PostgreSQL
# and came back as 'internal'; now refused at the edge (protocol/limits.py) ------

KNOWN_BUG_FRAMES = {
    "resume-last_event_id-over-int8": {"type": "resume", "id": 1, "last_event_id": 2**63},
    "read-up_to-over-int8": {"type": "read", "id": 1, "up_to": 2**63},
    "send_message-nul-in-client_id": {"type": "send_message", "id": 1, "client_id": "a\x00b", "text": "hi"},
    "send_message-nul-in-text": {"type": "send_message", "id": 1, "client_id": "c1", "text": "h\x00i"},
}


@pytest.mark.parametrize("name", sorted(KNOWN_BUG_FRAMES))
def test_known_bad_input_is_refused_not_internal(live: Live, name: str) -> None:
    message = {**KNOWN_BUG_FRAMES[name], "conversation_id": live.conversation_id}

    async def go() -> dict[str, Any] | int:
        ws = await live.client.ws_connect("/ws", headers=live.user.auth)
        try:
            await ws.send_str(orjson.dumps(message).decode())
            return await answer(ws, "json")
        finally:
            await ws.close()

    reply = live.run(go())
    assert isinstance(reply, dict) and reply["error"]["code"] == "invalid_field", reply
