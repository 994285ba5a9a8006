"""Conversations: inbox, history, idempotent sends, closed conversations,
read marks and unread counts, the message rate limit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES, fresh_rate_window
from tests.chat_helpers import Person, like, matched_pair, person
from tests.conftest import AppClient, MakeClient


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)


async def send(
    client: AppClient, who: Person, conversation_id: str, text: str, client_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    body = {"client_id": uuid.uuid4().hex if client_id is None else client_id, "text": text}
    resp = await client.post(f"/conversations/{conversation_id}/messages", json=body, headers=who.auth)
    return resp.status, await resp.json()


async def history(client: AppClient, who: Person, conversation_id: str, **params: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"/conversations/{conversation_id}/messages", params=params, headers=who.auth)
    return resp.status, await resp.json()


async def inbox(client: AppClient, who: Person, **params: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/conversations", params=params, headers=who.auth)
    return resp.status, await resp.json()


async def read(client: AppClient, who: Person, conversation_id: str, up_to: object) -> tuple[int, dict[str, Any]]:
    resp = await client.post(f"/conversations/{conversation_id}/read", json={"up_to": up_to}, headers=who.auth)
    return resp.status, await resp.json()


async def test_send_and_read_history(client: AppClient) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    status, first = await send(client, a, conv, "  hello there  ")
    assert status == 201
    assert first["text"] == "hello there" and first["sender_id"] == a.user_id
    assert first["conversation_id"] == conv
    status, second = await send(client, b, conv, "hi!")
    assert status == 201 and second["id"] > first["id"]
    status, page = await history(client, a, conv)
    assert status == 200
    assert [m["id"] for m in page["items"]] == [second["id"], first["id"]]  # newest first
    assert page["next_cursor"] is None


async def test_only_members_see_or_post(client: AppClient) -> None:
    a, _b, match = await matched_pair(client)
    conv = match["conversation_id"]
    await send(client, a, conv, "secret")
    stranger = await person(client)
    assert (await history(client, stranger, conv))[0] == 404
    assert (await send(client, stranger, conv, "let me in"))[0] == 404
    assert (await read(client, stranger, conv, 1))[0] == 404
    assert (await inbox(client, stranger))[1]["items"] == []
    assert (await history(client, a, str(uuid.uuid4())))[0] == 404
    assert (await history(client, a, "not-a-uuid"))[0] == 404
    assert (await client.get(f"/conversations/{conv}/messages")).status == 401


async def test_bad_messages(client: AppClient) -> None:
    a, _b, match = await matched_pair(client)
    conv = match["conversation_id"]
    assert (await send(client, a, conv, "   "))[0] == 400
    assert (await send(client, a, conv, "x" * 4001))[0] == 400
    assert (await send(client, a, conv, "  " + "x" * 4000 + "  "))[0] == 201
    assert (await send(client, a, conv, "ok", client_id=""))[0] == 400
    resp = await client.post(f"/conversations/{conv}/messages", json={"text": "no id"}, headers=a.auth)
    assert resp.status == 400


async def test_history_pagination(client: AppClient) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    sent = [(await send(client, a if i % 2 else b, conv, f"message {i}"))[1]["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    while True:
        status, page = await history(client, a, conv, limit=3, **({"cursor": cursor} if cursor else {}))
        assert status == 200 and len(page["items"]) <= 3
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))
    status, page = await history(client, a, conv, before=sent[3])
    assert [m["id"] for m in page["items"]] == list(reversed(sent[:3]))
    assert (await history(client, a, conv, cursor="nope"))[1]["error"]["code"] == "bad_cursor"
    assert (await history(client, a, conv, before="x"))[0] == 400
    assert (await history(client, a, conv, limit=101))[0] == 400


async def test_retry_with_same_client_id_returns_the_first_copy(client: AppClient, pg: asyncpg.Connection) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    status, first = await send(client, a, conv, "once", client_id="c-1")
    assert status == 201
    status, again = await send(client, a, conv, "once", client_id="c-1")
    assert status == 200 and again == first
    # Concurrent retries: still one message.
    replies = await asyncio.gather(*(send(client, a, conv, "burst", client_id="c-2") for _ in range(10)))
    assert sorted(s for s, _ in replies) == [200] * 9 + [201]
    assert len({body["id"] for _, body in replies}) == 1
    assert await pg.fetchval("SELECT count(*) FROM messages") == 2
    # One message event per message and member, never doubled.
    assert await pg.fetchval("SELECT count(*) FROM user_events WHERE type = 'message'") == 4
    # The other member may use the same client_id: ids are per sender.
    assert (await send(client, b, conv, "mine", client_id="c-1"))[0] == 201


async def test_closed_conversation(client: AppClient) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    status, first = await send(client, a, conv, "before", client_id="k")
    assert status == 201
    assert (await client.delete(f"/matches/{match['match_id']}", headers=b.auth)).status == 204
    status, body = await send(client, a, conv, "after")
    assert status == 409 and body["error"]["code"] == "conflict"
    # A retry of what was sent before the close still answers the first copy.
    assert await send(client, a, conv, "before", client_id="k") == (200, first)
    # History stays readable; the inbox no longer lists it.
    assert [m["id"] for m in (await history(client, b, conv))[1]["items"]] == [first["id"]]
    assert (await inbox(client, a))[1]["items"] == []


async def test_inbox_last_message_and_unread_counts(client: AppClient, pg: asyncpg.Connection) -> None:
    me = await person(client)
    a, _ = await asyncio.gather(person(client), person(client))
    await like(client, me, a)
    conv_a = (await like(client, a, me))[1]["conversation_id"]
    status, page = await inbox(client, me)
    assert status == 200
    [item] = page["items"]
    assert item["conversation_id"] == conv_a and item["last_message"] is None and item["unread_count"] == 0
    assert item["user"]["user_id"] == a.user_id

    ids = [(await send(client, a, conv_a, f"m{i}"))[1]["id"] for i in range(3)]
    await send(client, me, conv_a, "mine")  # one's own messages are never unread
    [item] = (await inbox(client, me))[1]["items"]
    assert item["unread_count"] == 3 and item["last_message"]["text"] == "mine"
    [theirs] = (await inbox(client, a))[1]["items"]
    assert theirs["unread_count"] == 1

    status, body = await read(client, me, conv_a, ids[1])
    assert status == 200 and body["last_read_message_id"] == ids[1]
    assert (await inbox(client, me))[1]["items"][0]["unread_count"] == 1
    # A mark never moves back; the old mark is answered.
    assert (await read(client, me, conv_a, ids[0]))[1]["last_read_message_id"] == ids[1]
    assert (await read(client, me, conv_a, ids[2]))[1]["last_read_message_id"] == ids[2]
    assert (await inbox(client, me))[1]["items"][0]["unread_count"] == 0
    # The other member hears about each move forward, nobody about the no-op.
    rows = await pg.fetch(
        "SELECT payload::text FROM user_events WHERE user_id = $1 AND type = 'read' ORDER BY event_id",
        uuid.UUID(a.user_id),
    )
    assert len(rows) == 2
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM user_events WHERE type = 'read' AND user_id = $1", uuid.UUID(me.user_id)
        )
        == 0
    )
    # up_to must be a message of this conversation.
    assert (await read(client, me, conv_a, 10**12))[0] == 400
    assert (await read(client, me, conv_a, "1"))[0] == 400


async def test_inbox_pagination_by_activity(client: AppClient) -> None:
    me = await person(client)
    convs = []
    for _ in range(5):
        other = await person(client)
        await like(client, me, other)
        convs.append((await like(client, other, me))[1]["conversation_id"])
    await send(client, me, convs[0], "bump")  # the oldest becomes the most recent
    expected = [convs[0], *reversed(convs[1:])]
    seen: list[str] = []
    cursor = None
    while True:
        status, page = await inbox(client, me, limit=2, **({"cursor": cursor} if cursor else {}))
        assert status == 200
        seen += [c["conversation_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert (await inbox(client, me, cursor="AAAA"))[0] == 400


async def test_message_rate_limit(make_client: MakeClient) -> None:
    client = await make_client(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=3)
    await fresh_rate_window()
    a, _b, match = await matched_pair(client)
    conv = match["conversation_id"]
    for i in range(3):
        assert (await send(client, a, conv, f"m{i}"))[0] == 201
    resp = await client.post(
        f"/conversations/{conv}/messages", json={"client_id": "over", "text": "too many"}, headers=a.auth
    )
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert (await resp.json())["error"]["code"] == "rate_limited"


async def test_next_cursor_works_as_before(client: AppClient) -> None:
    """The page's next_cursor goes back as ?before= (as documented) as well as ?cursor=."""
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    sent = [(await send(client, a if i % 2 else b, conv, f"message {i}"))[1]["id"] for i in range(5)]
    seen: list[int] = []
    cursor = None
    while True:
        status, page = await history(client, a, conv, limit=2, **({"before": cursor} if cursor else {}))
        assert status == 200, page
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))
    status, page = await history(client, a, conv, limit=2)
    by_cursor = await history(client, a, conv, cursor=page["next_cursor"])
    by_before = await history(client, a, conv, before=page["next_cursor"])
    assert by_cursor == by_before and by_before[0] == 200
    assert (await history(client, a, conv, before="bm9wZTox"))[1]["error"]["code"] == "bad_cursor"  # "nope:1"
    both = await history(client, a, conv, before=page["next_cursor"], cursor=page["next_cursor"])
    assert both[0] == 400
    assert (await history(client, a, conv, before="²"))[0] == 400
