"""Durable events reach every socket of a user exactly once, in ``event_id``
order, with no gaps: events that overtake each other on the way are put back
in order, gaps are filled from the event log, a lost pub/sub connection is
caught up from the log, and a socket whose gap was pruned closes with 4009.

The first tests drive one ``EventStream`` against the real event log; the
last ones flood real server processes (``run.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from protocol.codes import CloseCode
from proximity_server import keys
from proximity_server.broker import RedisBroker
from proximity_server.delivery import GAP_WAIT_SECONDS, EventStream, Message
from store.events import EventStore, append_event_in_transaction
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import person
from tests.conftest import AppClient
from tests.delivery_helpers import kill_pubsub_clients_of

SETTLE_SECONDS = GAP_WAIT_SECONDS * 4


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


class Recorder:
    """An ``EventStream`` over the real log of one user, recording what it does."""

    def __init__(self, events: EventStore, user_id: str) -> None:
        self.sent: list[int] = []
        self.closed: list[CloseCode] = []
        self.log_reads = 0

        async def read_log(after: int, limit: int) -> list[Message]:
            self.log_reads += 1
            return [e.to_wire() for e in await events.events_since(user_id, after, limit)]

        self.stream = EventStream(
            send=lambda message: self.sent.append(message["event_id"]),
            close=self.closed.append,
            read_log=read_log,
            read_newest=lambda: events.last_event_id(user_id),
        )

    def offer(self, event_id: int) -> None:
        """What the hub does: the stream sends it, or says the caller may."""
        if self.stream.offer({"event_id": event_id, "type": "message"}):
            self.sent.append(event_id)


async def append(client: AppClient, user_id: str, n: int) -> list[int]:
    """Append ``n`` events to the user's log (not published)."""
    ids = []
    async with client.app[keys.PG_POOL].acquire() as conn:
        for i in range(n):
            async with conn.transaction():
                ids.append((await append_event_in_transaction(conn, user_id, "message", {"n": i})).event_id)
    return ids


async def live_recorder(client: AppClient, backlog: int) -> tuple[Recorder, str]:
    who = await person(client)
    await append(client, who.user_id, backlog)
    recorder = Recorder(client.app[keys.EVENTS], who.user_id)
    replay = await recorder.stream.resume(0, 10_000)
    assert replay.replayed == backlog and recorder.sent == list(range(1, backlog + 1))
    return recorder, who.user_id


async def test_events_that_overtake_each_other_go_out_in_order(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 3)
    await append(client, user_id, 3)  # 4, 5, 6
    reads = recorder.log_reads
    for event_id in (5, 6, 4, 5, 3):
        recorder.offer(event_id)
    assert recorder.sent == [1, 2, 3, 4, 5, 6]
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.log_reads == reads  # the gap closed by itself: no query
    assert recorder.sent == [1, 2, 3, 4, 5, 6] and not recorder.closed


async def test_a_gap_is_filled_from_the_log(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 2)
    await append(client, user_id, 4)  # 3..6; only 6 arrives, then 4 (late)
    recorder.offer(6)
    assert recorder.sent == [1, 2]  # held while the gap is open
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.sent == [1, 2, 3, 4, 5, 6]
    recorder.offer(4)
    recorder.offer(5)
    assert recorder.sent == [1, 2, 3, 4, 5, 6] and not recorder.closed


async def test_events_before_resume_are_held_then_released_once(client: AppClient) -> None:
    who = await person(client)
    await append(client, who.user_id, 5)
    recorder = Recorder(client.app[keys.EVENTS], who.user_id)
    for event_id in (4, 2, 5):
        recorder.offer(event_id)
    assert recorder.sent == []
    replay = await recorder.stream.resume(1, 10_000)
    assert replay.replayed == 4 and recorder.sent == [2, 3, 4, 5]
    # "nothing to replay": what arrived since the socket opened, then live
    other = Recorder(client.app[keys.EVENTS], who.user_id)
    other.offer(5)
    other.offer(4)
    await other.stream.resume(None, 10_000)
    assert other.sent == [4, 5]
    await append(client, who.user_id, 1)
    other.offer(6)
    assert other.sent == [4, 5, 6]


async def test_a_gap_pruned_from_the_log_closes_with_resync(client: AppClient) -> None:
    recorder, user_id = await live_recorder(client, 2)
    await append(client, user_id, 3)  # 3, 4, 5
    await client.app[keys.EVENTS].prune(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    recorder.offer(5)
    await asyncio.sleep(SETTLE_SECONDS)
    assert recorder.closed == [CloseCode.RESYNC] and recorder.sent == [1, 2]
    recorder.offer(3)  # nothing goes out on a socket that is closing
    assert recorder.sent == [1, 2]


async def test_too_many_held_events_close_with_resync(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("proximity_server.delivery.MAX_HELD_EVENTS", 10)
    recorder, _ = await live_recorder(client, 1)
    for event_id in range(3, 14):
        recorder.offer(event_id)
    assert recorder.closed == [CloseCode.RESYNC] and recorder.sent == [1]
    assert recorder.stream.held == {}


async def test_broker_tells_listeners_when_it_resubscribes(settings: Settings) -> None:
    assert settings.redis_url
    name = f"{settings.redis_prefix}broker"
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True, client_name=name)
    heard: list[str] = []
    broker = RedisBroker(client, f"{settings.redis_prefix}ev:control", lambda channel, raw: None)
    broker.add_resubscribe_listener(heard.append)
    task = asyncio.create_task(broker.run())
    channel = f"{settings.redis_prefix}ev:user:x"
    try:
        await broker.subscribe(channel)
        assert heard == []  # a first subscription is not a re-subscription
        assert await kill_pubsub_clients_of(client, name=name) == 1
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == [channel] and broker.reconnects == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


def _ids(frames: list[dict[str, Any]]) -> list[int]:
    return [f["event_id"] for f in frames if isinstance(f.get("event_id"), int)]
