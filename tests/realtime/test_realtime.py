"""WS /ws: the user's socket across two app instances: auth, chat, typing,
read receipts, presence, resume with nothing lost, logout, token refresh."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES, bearer
from tests.chat_helpers import Person, matched_pair, person
from tests.conftest import AppClient, MakeClient

TIMEOUT = 3.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = orjson.loads(msg.data)
    return data


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next frame of a type, skipping others (e.g. presence)."""
    for _ in range(50):
        data = await frame(ws)
        if data["type"] == kind:
            return data
    raise AssertionError(f"no {kind} frame")


async def command(ws: aiohttp.ClientWebSocketResponse, cid: int, kind: str, **fields: Any) -> dict[str, Any]:
    await ws.send_str(orjson.dumps({"type": kind, "id": cid, **fields}).decode())
    for _ in range(50):
        data = await frame(ws)
        if data["type"] == "result" and data["id"] == cid:
            return data
    raise AssertionError("no result")


async def connect(client: AppClient, who: Person, last_event_id: int | None = None) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", headers=who.auth)
    reply = await command(ws, 0, "resume", last_event_id=last_event_id)
    assert reply["ok"], reply
    return ws


async def test_refused_before_upgrade_with_a_bad_token(client: AppClient) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers=bearer("not.a.jwt"))
    assert info.value.status == 401


async def test_auth_by_query_and_by_frame(client: AppClient) -> None:
    who = await person(client)
    ws = await client.ws_connect(f"/ws?access_token={who.token}")
    assert (await command(ws, 1, "ping"))["result"] == {"pong": True}
    await ws.close()
    ws = await client.ws_connect("/ws")
    refused = await command(ws, 1, "resume", last_event_id=None)
    assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
    ok = await command(ws, 2, "auth", access_token=who.token)
    assert ok == {"type": "result", "id": 2, "ok": True, "result": {"user_id": who.user_id}}
    assert (await command(ws, 3, "resume", last_event_id=None))["ok"]
    await ws.close()


async def test_no_auth_frame_closes_with_4401(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proximity_server.realtime.user_socket.AUTH_DEADLINE_SECONDS", 0.3)
    ws = await client.ws_connect("/ws")
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


async def test_a_bad_auth_frame_closes_with_4401(client: AppClient) -> None:
    ws = await client.ws_connect("/ws")
    reply = await command(ws, 1, "auth", access_token="forged.token.here")
    assert reply["ok"] is False
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


async def test_two_instances_match_chat_typing_read_presence(make_client: MakeClient) -> None:
    one, two = await make_client(), await make_client()
    a, b = await person(one), await person(two)
    ws_a = await connect(one, a)
    ws_b = await connect(two, b)
    assert (await one.post("/likes", json={"user_id": b.user_id, "action": "like"}, headers=a.auth)).status == 200
    resp = await two.post("/likes", json={"user_id": a.user_id, "action": "like"}, headers=b.auth)
    conversation_id = (await resp.json())["conversation_id"]
    match_a, match_b = await until(ws_a, "match"), await until(ws_b, "match")
    assert isinstance(match_a["event_id"], int) and isinstance(match_b["event_id"], int)

    sent = await command(ws_a, 1, "send_message", conversation_id=conversation_id, client_id="c-1", text="hi there")
    assert sent["ok"] and sent["result"]["text"] == "hi there"
    got = await until(ws_b, "message")
    assert got["message"]["text"] == "hi there" and got["event_id"] > match_b["event_id"]
    # a retry with the same client_id never doubles the message
    again = await command(ws_a, 2, "send_message", conversation_id=conversation_id, client_id="c-1", text="hi there")
    assert again["result"]["id"] == sent["result"]["id"]

    assert (await command(ws_a, 3, "typing", conversation_id=conversation_id))["ok"]
    typing = await until(ws_b, "typing")
    assert typing == {"type": "typing", "conversation_id": conversation_id, "user_id": a.user_id}

    read = await command(ws_b, 4, "read", conversation_id=conversation_id, up_to=sent["result"]["id"])
    assert read["ok"]
    receipt = await until(ws_a, "read")
    assert receipt["event_id"] > 0

    # presence: b leaves, a (a match) is told
    await ws_b.close()
    presence = await until(ws_a, "presence")
    assert presence["user_id"] == b.user_id and presence["online"] is False and presence["last_seen"]
    ws_b = await connect(one, b)
    presence = await until(ws_a, "presence")
    assert presence["user_id"] == b.user_id and presence["online"] is True
    # a stranger may not type into the conversation
    stranger = await person(one)
    ws_s = await connect(one, stranger)
    denied = await command(ws_s, 5, "typing", conversation_id=conversation_id)
    assert denied["ok"] is False and denied["error"]["code"] == "not_found"
    for ws in (ws_a, ws_b, ws_s):
        await ws.close()


async def test_resume_on_another_instance_gets_every_missed_event_once_in_order(make_client: MakeClient) -> None:
    one, two = await make_client(), await make_client()
    a, b, match = await matched_pair(one)
    conversation_id = match["conversation_id"]
    ws_a = await one.ws_connect("/ws", headers=a.auth)
    await ws_a.send_str(orjson.dumps({"type": "resume", "id": 1, "last_event_id": 0}).decode())
    first = await frame(ws_a)  # the match happened before this device connected
    assert first["type"] == "match" and first["event_id"] == 1
    assert (await frame(ws_a))["result"]["replayed"] == 1
    await ws_a.close()  # the phone drops off
    sent_ids = []
    for n in range(5):
        resp = await two.post(
            f"/conversations/{conversation_id}/messages",
            json={"client_id": f"m{n}", "text": f"msg {n}"},
            headers=b.auth,
        )
        assert resp.status == 201
        sent_ids.append((await resp.json())["id"])
    ws_a = await two.ws_connect("/ws", headers=a.auth)
    await ws_a.send_str(orjson.dumps({"type": "resume", "id": 1, "last_event_id": first["event_id"]}).decode())
    replayed = []
    while True:
        data = await frame(ws_a)
        if data["type"] == "result":
            assert data["ok"] and data["result"]["replayed"] == 5
            break
        replayed.append(data)
    assert [m["message"]["text"] for m in replayed] == [f"msg {n}" for n in range(5)]
    ids = [m["event_id"] for m in replayed]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] == first["event_id"] + 1
    # live again: the next message arrives once
    await two.post(
        f"/conversations/{conversation_id}/messages", json={"client_id": "m5", "text": "live"}, headers=b.auth
    )
    live = await until(ws_a, "message")
    assert live["message"]["text"] == "live" and live["event_id"] == ids[-1] + 1
    with pytest.raises(asyncio.TimeoutError):
        await ws_a.receive(timeout=0.3)
    await ws_a.close()


async def test_logout_all_closes_live_sockets_within_a_second(client: AppClient) -> None:
    who = await person(client)
    ws = await connect(client, who)
    resp = await client.post("/auth/logout-all", headers=who.auth)
    assert resp.status == 204
    msg = await ws.receive(timeout=1.0)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4401


async def test_refresh_renews_and_refuses_another_users_token(client: AppClient) -> None:
    who, other = await person(client), await person(client)
    ws = await connect(client, who)
    login = await client.post("/auth/refresh", json={"refresh_token": "x" * 43})
    assert login.status == 401
    renewed = await command(ws, 1, "refresh", access_token=who.token)
    assert renewed["ok"] and renewed["result"]["expires_in"] > 0
    refused = await command(ws, 2, "refresh", access_token=other.token)
    assert refused["ok"] is False and refused["error"]["code"] == "unauthorized"
    await ws.close()


async def test_matches_list_shows_presence(client: AppClient) -> None:
    a, b, _ = await matched_pair(client)

    async def presence_of_b() -> dict[str, Any]:
        resp = await client.get("/matches", headers=a.auth)
        (item,) = (await resp.json())["items"]
        presence: dict[str, Any] = item["presence"]
        return presence

    assert (await presence_of_b())["online"] is False
    ws_b = await connect(client, b)
    assert await presence_of_b() == {"online": True, "last_seen": None}
    await ws_b.close()
    for _ in range(20):  # the release runs right after the socket closes
        state = await presence_of_b()
        if not state["online"]:
            break
        await asyncio.sleep(0.05)
    assert state["online"] is False and state["last_seen"]
