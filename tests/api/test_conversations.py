"""Conversations: inbox, history, idempotent sends, closed conversations,
read marks and unread counts, the message rate limit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from proximity_server.app import state as keys
from store import db
from store.conversations import (
    LANE_LINGER_SECONDS,
    ConversationStore,
    GroupCommit,
    ReadOutcome,
    ReadStatus,
    SendOutcome,
    SendStatus,
    message_from_row,
    message_payload,
)
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


async def test_a_send_is_one_round_trip(client: AppClient, settings: Settings) -> None:
    a, _, match = await matched_pair(client)
    conv = match["conversation_id"]
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        queries: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        store = ConversationStore(pool)
        outcomes = [
            await store.send(conv, a.user_id, "rt-1", "hello"),
            await store.send(conv, a.user_id, "rt-1", "hello"),
            await store.send(str(uuid.uuid4()), a.user_id, "rt-2", "nobody"),
        ]
        assert [o.status for o in outcomes] == [SendStatus.CREATED, SendStatus.DUPLICATE, SendStatus.NOT_FOUND]
        # (The pool's release sends nothing: every statement is the store's.)
        assert len(queries) == 3 and len(set(queries)) == 1 and "chat_send" in queries[0]
    finally:
        await pool.close()


async def test_the_send_reply_carries_the_committed_rows(client: AppClient, pg: asyncpg.Connection) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    store = ConversationStore(client.app[keys.PG_POOL])
    sent = await store.send(conv, b.user_id, "x-1", "héllo \U0001f600")
    assert sent.status == SendStatus.CREATED and sent.message is not None
    row = await pg.fetchrow("SELECT * FROM messages WHERE id = $1", sent.message.id)
    assert sent.message == message_from_row(row)
    assert await pg.fetchval("SELECT last_message_id FROM conversations WHERE id = $1", uuid.UUID(conv)) == row["id"]
    events = client.app[keys.EVENTS]
    for event in sent.events:
        [stored] = await events.events_since(event.user_id, event.event_id - 1, 1)
        assert stored == event
        assert event.payload == {"conversation_id": conv, "message": message_payload(sent.message)}
    assert sorted(e.user_id for e in sent.events) == sorted((a.user_id, b.user_id))
    # A retry answers the first copy (its text, its time) and appends nothing.
    again = await store.send(conv, b.user_id, "x-1", "changed")
    assert again == SendOutcome(SendStatus.DUPLICATE, sent.message)
    assert (await store.send(conv, a.user_id, "x-1", "a's own")).status == SendStatus.CREATED
    c = await person(client)
    await like(client, b, c)
    _, other = await like(client, c, b)
    assert await store.send(other["conversation_id"], b.user_id, "x-1", "elsewhere") == SendOutcome(
        SendStatus.CLIENT_ID_REUSED
    )


async def test_a_failed_send_leaves_nothing_behind(client: AppClient, pg: asyncpg.Connection) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    store = ConversationStore(client.app[keys.PG_POOL])
    first = await store.send(conv, a.user_id, "ok-1", "fine")
    # The second member's event-log row fails, after the message, the
    # conversation and both counters were written: all of it rolls back.
    await pg.execute(
        """CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.payload->'message'->>'text' = 'boom' AND NEW.user_id = $1::uuid THEN
                   RAISE EXCEPTION 'refused';
               END IF;
               RETURN NEW;
           END $$""".replace("$1::uuid", f"'{max(a.user_id, b.user_id, key=uuid.UUID)}'::uuid")
    )
    await pg.execute(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON user_events FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
    )
    with pytest.raises(asyncpg.RaiseError):
        await store.send(conv, a.user_id, "boom-1", "boom")
    assert await pg.fetchval("SELECT count(*) FROM messages") == 1
    assert await pg.fetchval("SELECT last_message_id FROM conversations WHERE id = $1", uuid.UUID(conv)) == (
        first.message.id if first.message else None
    )
    counters = await pg.fetch("SELECT last_event_id FROM user_event_counters")
    assert sorted(r["last_event_id"] for r in counters) == [2, 2]  # the match and the first message
    after = await store.send(conv, a.user_id, "ok-2", "fine again")
    assert sorted(e.event_id for e in after.events) == [3, 3]


async def test_concurrent_sends_commit_in_id_order(make_client: MakeClient, pg: asyncpg.Connection) -> None:
    first = await make_client(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)
    second = await make_client(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)
    a, b, match = await matched_pair(first)
    conv = match["conversation_id"]
    replies = await asyncio.gather(
        *(send(first if i % 2 else second, a if i % 3 else b, conv, f"m{i}") for i in range(30))
    )
    assert sorted(s for s, _ in replies) == [201] * 30
    ids = sorted(body["id"] for _, body in replies)
    assert await pg.fetchval("SELECT last_message_id FROM conversations WHERE id = $1", uuid.UUID(conv)) == ids[-1]
    for who in (a, b):
        # Each member's log lists the messages in the order of their ids.
        logged = await pg.fetch(
            """SELECT (payload->'message'->>'id')::bigint AS id FROM user_events
               WHERE user_id = $1 AND type = 'message' ORDER BY event_id""",
            uuid.UUID(who.user_id),
        )
        assert [r["id"] for r in logged] == ids


async def test_group_commit_answers_each_send_as_if_alone(
    client: AppClient, settings: Settings, pg: asyncpg.Connection
) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    c = await person(client)
    await like(client, a, c)
    _, closed = await like(client, c, a)
    assert (await client.delete(f"/matches/{closed['match_id']}", headers=a.auth)).status == 204
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=2)
    try:
        queries: list[str] = []
        for _ in range(2):
            async with pool.acquire() as conn:
                conn.add_query_logger(lambda logged: queries.append(logged.query))
        store = ConversationStore(pool)
        store._sends = GroupCommit(pool, lanes=1)  # one lane: everything behind the first send is batched
        sends = [
            (conv, a.user_id, "g-0", "first, alone"),
            (conv, a.user_id, "g-1", "one"),
            (conv, b.user_id, "g-1", "b's own g-1"),
            (conv, a.user_id, "g-1", "a retry in the same batch"),
            (str(uuid.uuid4()), a.user_id, "g-2", "no such conversation"),
            (closed["conversation_id"], a.user_id, "g-3", "closed"),
            (closed["conversation_id"], a.user_id, "g-1", "reused elsewhere"),
            (conv, b.user_id, "g-4", "two"),
            (conv, a.user_id, "g-5", "three"),
        ]
        events = client.app[keys.EVENTS]
        before = {who.user_id: await events.last_event_id(who.user_id) for who in (a, b)}
        outcomes = await asyncio.gather(*(store.send(*s) for s in sends))
        assert any("chat_send_batch" in q for q in queries)
        assert [o.status for o in outcomes] == [
            SendStatus.CREATED,
            SendStatus.CREATED,
            SendStatus.CREATED,
            SendStatus.DUPLICATE,
            SendStatus.NOT_FOUND,
            SendStatus.CLOSED,
            SendStatus.CLIENT_ID_REUSED,
            SendStatus.CREATED,
            SendStatus.CREATED,
        ]
        assert outcomes[3].message == outcomes[1].message and outcomes[3].events == ()
        created = [o for o in outcomes if o.status == SendStatus.CREATED]
        ids = [o.message.id for o in created if o.message]
        assert ids == sorted(ids) and len(set(ids)) == 5
        assert await pg.fetchval("SELECT last_message_id FROM conversations WHERE id = $1", uuid.UUID(conv)) == ids[-1]
        for who in (a, b):
            mine = [e for o in created for e in o.events if e.user_id == who.user_id]
            start = before[who.user_id]
            assert [e.event_id for e in mine] == list(range(start + 1, start + 6))  # gap-free, in message order
            stored = await events.events_since(who.user_id, start, 100)
            assert stored == mine
    finally:
        await pool.close()


async def test_one_bad_send_in_a_batch_fails_alone(client: AppClient, settings: Settings) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        store = ConversationStore(pool)
        store._sends = GroupCommit(pool, lanes=1)
        texts = ["alone", "fine", "nul \x00 is refused by PostgreSQL", "fine too"]
        outcomes = await asyncio.gather(
            *(store.send(conv, a.user_id, f"b-{i}", t) for i, t in enumerate(texts)), return_exceptions=True
        )
        assert isinstance(outcomes[2], asyncpg.PostgresError)
        good = [o for i, o in enumerate(outcomes) if i != 2]
        assert all(isinstance(o, SendOutcome) and o.status == SendStatus.CREATED for o in good)
        assert await client.app[keys.EVENTS].last_event_id(b.user_id) == 1 + 3
    finally:
        await pool.close()


async def test_a_busy_lane_keeps_its_connection(client: AppClient, settings: Settings) -> None:
    a, _, match = await matched_pair(client)
    conv = match["conversation_id"]
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        queries: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: queries.append(logged.query))
            reset = conn.get_reset_query()
        await asyncio.sleep(0.05)  # query loggers are called soon after, not at once
        queries.clear()
        store = ConversationStore(pool)
        for i in range(3):  # back to back: no reset query between the sends
            assert (await store.send(conv, a.user_id, f"l-{i}", "hi")).status == SendStatus.CREATED
        await asyncio.sleep(0)
        assert reset not in queries and len(queries) == 3
        assert pool.get_idle_size() == 0  # the lane still holds its connection
        await asyncio.sleep(LANE_LINGER_SECONDS * 10)  # idle: the connection goes back to the pool
        assert pool.get_idle_size() == 1
        assert queries[3:] == []  # and its release sends nothing (store/db.py Connection)
    finally:
        await pool.close()


async def test_a_read_mark_is_one_round_trip(client: AppClient, settings: Settings) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    first = (await send(client, a, conv, "one"))[1]["id"]
    second = (await send(client, a, conv, "two"))[1]["id"]
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        queries: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        store = ConversationStore(pool)
        marked = await store.mark_read(conv, b.user_id, second)
        assert marked.status == ReadStatus.MARKED and marked.last_read_message_id == second
        [event] = marked.events
        assert event.user_id == a.user_id and event.type == "read"
        assert [event] == await client.app[keys.EVENTS].events_since(a.user_id, event.event_id - 1, 10)
        assert await store.mark_read(conv, b.user_id, first) == ReadOutcome(ReadStatus.MARKED, second)  # never back
        assert (await store.mark_read(conv, b.user_id, second + 1000)).status == ReadStatus.NO_SUCH_MESSAGE
        assert (await store.mark_read(str(uuid.uuid4()), b.user_id, second)).status == ReadStatus.NOT_FOUND
        await asyncio.sleep(0.05)
        assert len(queries) == 4 and len(set(queries)) == 1 and "chat_mark_read" in queries[0]
    finally:
        await pool.close()


async def test_sends_get_the_error_when_postgresql_is_out_of_reach(client: AppClient, settings: Settings) -> None:
    a, _, match = await matched_pair(client)
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    await pool.close()
    store = ConversationStore(pool)
    outcomes = await asyncio.gather(
        *(store.send(match["conversation_id"], a.user_id, f"down-{i}", "hi") for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, asyncpg.InterfaceError) for o in outcomes), outcomes
