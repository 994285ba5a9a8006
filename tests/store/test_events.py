"""The per-user event log: gap-free ids, resume with events_since, and
publishing on the user's Redis channel after COMMIT."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from protocol import bus
from proximity_server.app import state as keys
from store.events import Event, EventType, NewEvent, _iso, append_events_in_transaction, encode_event
from store.redis_keys import Keys
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import Person, like, matched_pair, person
from tests.conftest import AppClient, MakeClient


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)


async def send(client: AppClient, who: Person, conversation_id: str, text: str) -> dict[str, Any]:
    resp = await client.post(
        f"/conversations/{conversation_id}/messages",
        json={"client_id": uuid.uuid4().hex, "text": text},
        headers=who.auth,
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def event_ids(pg: asyncpg.Connection, user_id: str) -> list[int]:
    rows = await pg.fetch("SELECT event_id FROM user_events WHERE user_id = $1 ORDER BY event_id", uuid.UUID(user_id))
    return [r["event_id"] for r in rows]


async def test_event_ids_are_gap_free_under_concurrency(make_client: MakeClient, pg: asyncpg.Connection) -> None:
    first = await make_client(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)
    second = await make_client(**ACCOUNT_OVERRIDES, rate_limit_messages_per_minute=1000)
    a, b, match = await matched_pair(first)
    conv = match["conversation_id"]
    # 40 messages at once from both sides, through two processes.
    await asyncio.gather(*(send(first if i % 2 else second, a if i % 3 else b, conv, f"m{i}") for i in range(40)))
    for who in (a, b):
        assert await event_ids(pg, who.user_id) == list(range(1, 42))  # 1 match + 40 messages
    counters = await pg.fetch("SELECT last_event_id FROM user_event_counters")
    assert sorted(r["last_event_id"] for r in counters) == [41, 41]


async def test_a_rolled_back_change_gives_its_event_id_back(client: AppClient, pg: asyncpg.Connection) -> None:
    a = await person(client)
    pool = client.app[keys.PG_POOL]
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await append_events_in_transaction(conn, [NewEvent(a.user_id, "test", {"n": 1})])
                raise RuntimeError("roll back")
        async with conn.transaction():
            [event] = await append_events_in_transaction(conn, [NewEvent(a.user_id, "test", {"n": 2})])
    assert event.event_id == 1
    assert await event_ids(pg, a.user_id) == [1]


async def test_events_since_returns_exactly_the_missed_events(client: AppClient) -> None:
    a, b, match = await matched_pair(client)
    conv = match["conversation_id"]
    store = client.app[keys.EVENTS]
    [match_event] = await store.events_since(b.user_id, 0, 100)
    assert match_event.event_id == 1 and match_event.type == "match"
    assert match_event.payload == {
        "match_id": match["match_id"],
        "conversation_id": conv,
        "other_user_id": a.user_id,
    }
    sent = [await send(client, a, conv, f"m{i}") for i in range(5)]
    resp = await client.post(f"/conversations/{conv}/read", json={"up_to": sent[-1]["id"]}, headers=b.auth)
    assert resp.status == 200
    # b saw up to event 3; it missed events 4, 5, 6 (messages 2..4).
    missed = await store.events_since(b.user_id, 3, 100)
    assert [e.event_id for e in missed] == [4, 5, 6]
    assert [e.payload["message"]["id"] for e in missed] == [m["id"] for m in sent[2:]]
    assert all(e.type == "message" and e.payload["conversation_id"] == conv for e in missed)
    # a also got the read mark; limit pages through.
    a_events = await store.events_since(a.user_id, 0, 100)
    assert [e.type for e in a_events] == ["match"] + ["message"] * 5 + ["read"]
    assert a_events[-1].payload == {
        "conversation_id": conv,
        "reader_id": b.user_id,
        "last_read_message_id": sent[-1]["id"],
    }
    assert [e.event_id for e in await store.events_since(a.user_id, 2, 2)] == [3, 4]
    assert await store.events_since(a.user_id, 7, 100) == []
    assert await store.last_event_id(a.user_id) == 7


async def test_events_are_published_on_the_users_channel(
    client: AppClient, redis: aioredis.Redis, settings: Settings
) -> None:
    a, b = await asyncio.gather(person(client), person(client))
    redis_keys = Keys(settings.redis_prefix)
    pubsub = redis.pubsub()
    await pubsub.subscribe(redis_keys.user_channel(a.user_id), redis_keys.user_channel(b.user_id))
    for _ in range(2):
        assert (await pubsub.get_message(timeout=2.0))["type"] == "subscribe"  # type: ignore[index]

    async def next_events(n: int) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        while len(out) < n:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            assert message is not None, f"only {len(out)} of {n} events arrived"
            data: str = message["data"]
            kind, body = bus.decode(data)
            assert kind == bus.EVENT
            out.append((message["channel"], orjson.loads(body)))
        return out

    try:
        await like(client, a, b)
        _, match = await like(client, b, a)
        got = dict(await next_events(2))
        for me, other in ((a, b), (b, a)):
            event = got[redis_keys.user_channel(me.user_id)]
            assert event["event_id"] == 1 and event["type"] == "match"
            assert event["match_id"] == match["match_id"] and event["other_user_id"] == other.user_id
            assert event["created_at"].endswith("Z")

        message = await send(client, a, match["conversation_id"], "hello")
        got = dict(await next_events(2))
        for me in (a, b):
            event = got[redis_keys.user_channel(me.user_id)]
            assert event["event_id"] == 2 and event["type"] == "message"
            assert event["message"] == message

        resp = await client.delete(f"/matches/{match['match_id']}", headers=b.auth)
        assert resp.status == 204
        got = dict(await next_events(2))
        assert {e["type"] for e in got.values()} == {"unmatch"}
        assert {e["event_id"] for e in got.values()} == {3}
        # Published events are the stored ones.
        stored = await client.app[keys.EVENTS].events_since(a.user_id, 0, 10)
        assert orjson.loads(orjson.dumps(stored[-1].to_wire())) == got[redis_keys.user_channel(a.user_id)]
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_sql_writes_event_times_as_python_does(client: AppClient, pg: asyncpg.Connection) -> None:
    """chat_send builds its events' payload in SQL; the times in it must read
    exactly as the published copy (store.events._iso) does."""
    samples = [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # no microseconds: none written
        dt.datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    ]
    for value in samples:
        assert await pg.fetchval("SELECT chat_iso_utc($1)", value) == _iso(value)


@pytest.mark.parametrize(
    "payload",
    [{}, {"conversation_id": "c1", "message": {"id": 7, "text": 'héllo "quoted" ✓', "n": None}}, {"x": [1, 2]}],
)
def test_encode_event_is_the_wire_object_byte_for_byte(payload: dict[str, Any]) -> None:
    created = dt.datetime(2026, 12, 4, 14, 3, 33, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    event = Event("u1", 42, EventType.MESSAGE, payload, created)
    expected = bus.event(event.to_wire())
    assert encode_event(event) == expected
    assert encode_event(event, orjson.dumps(payload)) == expected  # the payload encoded once, for several events
    assert orjson.loads(bus.decode(expected)[1])["created_at"] == "2026-12-04T12:03:33.123456Z"
