"""WS /ws/{ble_token}: authentication, nudges (JSON and msgpack), delivery
across two app instances, bad frames, session expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgpack
import orjson
import pytest

from tests.conftest import AppClient, MakeClient
from tests.helpers import attempt_match, bearer, new_token, open_session

RECEIVE_TIMEOUT = 3.0


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = orjson.loads(msg.data)
    return data


async def assert_silent(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.3) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=seconds)


async def test_socket_refused_before_upgrade_without_the_secret(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    for url, headers in (
        (f"/ws/{token}", {}),
        (f"/ws/{token}?session_id=wrong", {}),
        (f"/ws/{token}", bearer("wrong")),
        (f"/ws/{new_token()}?session_id={secret}", {}),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect(url, headers=headers)
        assert info.value.status == 401
    resp = await client.get("/ws/short?session_id=x")
    assert resp.status == 400


async def test_both_parties_get_one_nudge_each(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops", "hardstyle"])
    b, secret_b = await open_session(client, ["devops", "hardstyle", "hiking"])
    ws_a = await client.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    ws_b = await client.ws_connect(f"/ws/{b}?session_id={secret_b}")
    await attempt_match(client, a, secret_a, b)
    await attempt_match(client, b, secret_b, a)  # the other phone reports too
    expected = {
        "type": "nudge",
        "shared_interests": ["music", "tech"],
        "message": "Someone nearby shares your interest in music and tech.",
    }
    assert await receive_json(ws_a) == expected
    assert await receive_json(ws_b) == expected
    await assert_silent(ws_a)
    await assert_silent(ws_b)
    await ws_a.close()
    await ws_b.close()


async def test_every_socket_of_a_token_gets_the_nudge_on_either_instance(make_client: MakeClient) -> None:
    one = await make_client()
    two = await make_client()
    a, secret_a = await open_session(one, ["devops"])
    b, secret_b = await open_session(two, ["coding"])
    on_one = await one.ws_connect(f"/ws/{b}", headers=bearer(secret_b))
    on_two = await two.ws_connect(f"/ws/{b}", headers=bearer(secret_b))
    a_on_two = await two.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    await attempt_match(one, a, secret_a, b)
    for ws in (on_one, on_two, a_on_two):
        assert (await receive_json(ws))["shared_interests"] == ["tech"]
    for ws in (on_one, on_two, a_on_two):
        await ws.close()


async def test_msgpack_subprotocol_gets_binary_frames(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{b}", headers=bearer(secret_b), protocols=("proximity.msgpack",))
    assert ws.protocol == "proximity.msgpack"
    plain = await client.ws_connect(f"/ws/{b}", headers=bearer(secret_b), protocols=("proximity.json",))
    assert plain.protocol == "proximity.json"
    await attempt_match(client, a, secret_a, b)
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.BINARY
    assert msgpack.unpackb(msg.data) == {
        "type": "nudge",
        "shared_interests": ["tech"],
        "message": "Someone nearby shares your interest in tech.",
    }
    assert (await receive_json(plain))["type"] == "nudge"
    # commands work in msgpack too
    await ws.send_bytes(msgpack.packb({"type": "ping", "id": 7}))
    reply = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msgpack.unpackb(reply.data) == {"type": "result", "id": 7, "ok": True, "result": {"pong": True}}
    await ws.close()
    await plain.close()


async def test_bad_frames_get_errors_then_1008(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    await ws.send_str('{"type": "ping", "id": "p1"}')
    assert await receive_json(ws) == {"type": "result", "id": "p1", "ok": True, "result": {"pong": True}}
    await ws.send_str("{not json")
    assert (await receive_json(ws))["error"]["code"] == "bad_frame"
    await ws.send_str('{"type": "launch", "id": 1}')
    assert await receive_json(ws) == {
        "type": "result",
        "id": 1,
        "ok": False,
        "error": {"code": "unknown_command", "message": "unknown command 'launch'"},
    }
    await ws.send_str("[1,2,3]")
    assert (await receive_json(ws))["type"] == "error"
    await ws.send_str('{"type": "ping"}')
    assert (await receive_json(ws))["type"] == "error"
    await ws.send_bytes(b"\xc1\xc1")
    assert (await receive_json(ws))["error"]["code"] == "bad_frame"
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008


async def test_huge_frame_closes_with_1009(client: AppClient) -> None:
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    await ws.send_str("x" * 100_000)
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert ws.close_code == 1009
    # the server is fine afterwards
    assert (await client.get("/livez")).status == 200


async def test_session_expiry_closes_its_sockets(make_client: MakeClient) -> None:
    client = await make_client(session_ttl_seconds=1)
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    msg = await ws.receive(timeout=5.0)
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4410


async def test_refreshed_session_keeps_its_socket(make_client: MakeClient) -> None:
    client = await make_client(session_ttl_seconds=2)
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    for _ in range(3):
        await asyncio.sleep(1.0)
        resp = await client.post("/session", json={"ble_token": token, "interests": ["devops"]}, headers=bearer(secret))
        assert resp.status == 200
    assert not ws.closed
    await ws.send_str('{"type": "ping", "id": 1}')
    assert (await receive_json(ws))["ok"] is True
    await ws.close()


async def test_shutdown_closes_sockets_with_1001(make_client: MakeClient) -> None:
    client = await make_client()
    token, secret = await open_session(client, ["devops"])
    ws = await client.ws_connect(f"/ws/{token}", headers=bearer(secret))
    closing = asyncio.ensure_future(ws.receive(timeout=5.0))
    await client.server.close()
    msg = await closing
    assert msg.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1001
