"""The per-user durable event log, and publishing its events on Redis.

Every change another device of a user must learn about (a match, an unmatch,
a message, a read mark) appends an event to that user's log *in the same
transaction* as the change, then, after COMMIT, the event is published on the
user's channel. Stored first, published second: a client that missed a
publish (it was reconnecting) asks :meth:`EventStore.events_since` for
everything after the last ``event_id`` it saw.

``event_id`` counts 1, 2, 3, … per user with no gaps. It comes from the
user's row in ``user_event_counters``, bumped with an upsert that holds the
row lock until COMMIT, so concurrent writers for one user queue up and a
rolled-back change gives its id back. Writers that append for several users
lock them in user-id order (:func:`append_events_in_transaction`), so two
transactions never wait on each other in a cycle. Chat sends and read marks
append theirs inside PostgreSQL (``chat_send``, ``chat_send_batch``,
``chat_mark_read`` in migration 0005) with the same upsert, the same order
and the same payloads, so ``events_since`` and the published copies read
alike whoever wrote them.

Published payload (on ``keys.user_channel(user_id)``, in the bus envelope of
``protocol/bus.py``)::

    event|{"event_id": 7, "type": "message", "created_at": "…", <payload fields>}

i.e. ``bus.event`` of the event id, type, time and the payload's fields,
flattened (payload fields never use those three names).
Subscribers need nothing else; ``events_since`` returns the same events.

Retention: events older than ``EVENT_RETENTION_DAYS`` may be pruned
(:meth:`EventStore.prune`); a client that resumes from before the oldest kept
event gets what is left and should reload its lists.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

from protocol import bus
from store.pubsub import Publisher
from store.redis_keys import Keys

EVENT_RETENTION_DAYS: Final = 30
RESERVED_FIELDS: Final = frozenset({"event_id", "type", "created_at"})


class EventType:
    MATCH = "match"
    UNMATCH = "unmatch"
    MESSAGE = "message"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Event:
    user_id: str
    event_id: int
    type: str
    payload: Mapping[str, Any]
    created_at: dt.datetime

    def to_wire(self) -> dict[str, Any]:
        """The flat JSON object published and returned on resume."""
        return {"event_id": self.event_id, "type": self.type, "created_at": _iso(self.created_at), **self.payload}


@dataclass(frozen=True, slots=True)
class NewEvent:
    user_id: str
    type: str
    payload: Mapping[str, Any]


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


_EVENT_PREFIX_BYTES: Final = bus.prefix(bus.EVENT).encode()
_EMPTY_OBJECT: Final = b"{}"


def encode_event(event: Event, payload_json: bytes | None = None) -> bytes:
    """The bus envelope of a durable event (``protocol.bus.event``): the orjson of :meth:`Event.to_wire`, byte for byte.

    ``payload_json`` (the orjson of ``event.payload``) may be given when
    several events share one payload (a message's two members): it is then
    encoded once, and only the event's own fields are written per event.
    """
    if payload_json is None:
        payload_json = orjson.dumps(event.payload)
    head = orjson.dumps({"event_id": event.event_id, "type": event.type, "created_at": _iso(event.created_at)})
    if payload_json == _EMPTY_OBJECT:
        return _EVENT_PREFIX_BYTES + head
    return b"".join((_EVENT_PREFIX_BYTES, head[:-1], b",", payload_json[1:]))


_APPEND_SQL: Final = """
    WITH counter AS (
        INSERT INTO user_event_counters AS c (user_id, last_event_id) VALUES ($1, 1)
        ON CONFLICT (user_id) DO UPDATE SET last_event_id = c.last_event_id + 1
        RETURNING last_event_id
    )
    INSERT INTO user_events (user_id, event_id, type, payload)
    SELECT $1, last_event_id, $2, $3::jsonb FROM counter
    RETURNING event_id, created_at"""


async def append_event_in_transaction(
    conn: asyncpg.Connection, user_id: str, type: str, payload: Mapping[str, Any]
) -> Event:
    """Append one event to the user's log; the caller's transaction commits it."""
    assert conn.is_in_transaction(), "append_event_in_transaction needs a transaction"
    assert not RESERVED_FIELDS & payload.keys(), "payload fields clash with the event's own"
    row = await conn.fetchrow(_APPEND_SQL, uuid.UUID(user_id), type, orjson.dumps(payload).decode())
    return Event(user_id, row["event_id"], type, dict(payload), row["created_at"])


async def append_events_in_transaction(conn: asyncpg.Connection, events: Iterable[NewEvent]) -> list[Event]:
    """Append several events, locking the users' counters in user-id order
    (the same order everywhere, so concurrent writers cannot deadlock)."""
    ordered = sorted(events, key=lambda e: uuid.UUID(e.user_id))
    return [await append_event_in_transaction(conn, e.user_id, e.type, e.payload) for e in ordered]


def _event(row: asyncpg.Record) -> Event:
    return Event(str(row["user_id"]), row["event_id"], row["type"], orjson.loads(row["payload"]), row["created_at"])


class EventStore:
    def __init__(self, pool: asyncpg.Pool, publisher: Publisher, keys: Keys) -> None:
        self._pool = pool
        self._publisher = publisher
        self._keys = keys

    async def events_since(self, user_id: str, last_event_id: int, limit: int) -> list[Event]:
        """The user's events after ``last_event_id``, oldest first, at most ``limit``."""
        rows = await self._pool.fetch(
            """SELECT user_id, event_id, type, payload::text AS payload, created_at
               FROM user_events WHERE user_id = $1 AND event_id > $2
               ORDER BY event_id LIMIT $3""",
            uuid.UUID(user_id),
            last_event_id,
            limit,
        )
        return [_event(r) for r in rows]

    async def last_event_id(self, user_id: str) -> int:
        """The newest event id of the user (0 before the first event)."""
        value = await self._pool.fetchval(
            "SELECT last_event_id FROM user_event_counters WHERE user_id = $1", uuid.UUID(user_id)
        )
        return int(value or 0)

    async def prune(self, older_than: dt.datetime) -> int:
        """Delete events created before ``older_than``; returns how many."""
        status = await self._pool.execute("DELETE FROM user_events WHERE created_at < $1", older_than)
        return int(status.split()[-1])

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish committed events, one round trip; a payload shared by several
        events (a message's two copies) is encoded once."""
        encoded: dict[int, bytes] = {}
        messages = []
        for e in events:
            payload_json = encoded.get(id(e.payload))
            if payload_json is None:
                payload_json = encoded[id(e.payload)] = orjson.dumps(e.payload)
            messages.append((self._keys.user_channel(e.user_id), encode_event(e, payload_json)))
        await self._publisher.publish_many(messages)
