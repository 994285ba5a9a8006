"""Conversations (one per match), their messages and the members' read marks.

Sending is one round trip: the ``chat_send`` function (migration 0005) runs
in one implicit transaction; sends that arrive while earlier ones are in
flight are committed together by ``chat_send_batch`` (group commit: one
round trip and one COMMIT for the lot, see :class:`GroupCommit`). It locks the conversation row (``FOR UPDATE``):
sends in one conversation queue up, so message ids commit in increasing order
within it and ``last_message_id`` always points at the newest one; an unmatch
that closes the conversation waits for (or is waited on by) a send, never
races it. A message and its ``message`` events for both members commit
together. A retried send (same sender, same ``client_id``) finds the first
copy.

Lock order: conversation row, then member rows, then event counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from store.events import Event, EventType
from store.profiles import PERSON_CARD_COLUMNS, PERSON_CARD_JOINS, PersonCard, person_card

_MESSAGE_COLUMNS: Final = "id, conversation_id, sender, client_id, text, created_at"
_SEND_SQL: Final = "SELECT * FROM chat_send($1, $2, $3, $4)"
_MARK_READ_SQL: Final = "SELECT * FROM chat_mark_read($1, $2, $3)"
_SEND_BATCH_SQL: Final = "SELECT * FROM chat_send_batch($1, $2, $3, $4) ORDER BY item"
SEND_LANES: Final = 2  # batches in flight at once, each on a pooled connection of its own
MAX_SEND_BATCH: Final = 64
# A lane that runs dry waits this long for more sends before it gives its
# connection back: under steady load it keeps it, and skips the pool's reset
# query (a round trip) that every release costs.
LANE_LINGER_SECONDS: Final = 0.005


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    conversation_id: str
    sender_id: str
    client_id: str
    text: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ConversationRow:
    id: str
    match_id: str
    created_at: dt.datetime
    last_activity_at: dt.datetime
    other: PersonCard
    last_message: Message | None
    unread: int


class SendStatus:
    NOT_FOUND = "not_found"  # no such conversation, or not a member
    CLOSED = "closed"
    CLIENT_ID_REUSED = "client_id_reused"  # the client_id was used in another conversation
    CREATED = "created"
    DUPLICATE = "duplicate"  # a retry: the first copy is returned


@dataclass(frozen=True, slots=True)
class SendOutcome:
    status: str
    message: Message | None = None
    events: tuple[Event, ...] = ()
    view: dict[str, Any] | None = None  # message_payload(message), when already built for the events


class ReadStatus:
    NOT_FOUND = "not_found"
    NO_SUCH_MESSAGE = "no_such_message"
    MARKED = "marked"


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    status: str
    last_read_message_id: int = 0
    events: tuple[Event, ...] = ()


def message_from_row(row: asyncpg.Record, prefix: str = "") -> Message:
    return Message(
        id=row[f"{prefix}id"],
        conversation_id=str(row[f"{prefix}conversation_id"]),
        sender_id=str(row[f"{prefix}sender"]),
        client_id=row[f"{prefix}client_id"],
        text=row[f"{prefix}text"],
        created_at=row[f"{prefix}created_at"],
    )


def message_payload(message: Message) -> dict[str, Any]:
    """How a message appears in events (and, shaped alike, in replies)."""
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "sender_id": message.sender_id,
        "client_id": message.client_id,
        "text": message.text,
        "created_at": message.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }


_SendArgs = tuple[uuid.UUID, uuid.UUID, str, str]  # conversation, sender, client_id, text
_Pending = tuple[_SendArgs, "asyncio.Future[asyncpg.Record]"]


def _resolve(future: asyncio.Future[asyncpg.Record], row: asyncpg.Record) -> None:
    if not future.done():  # the caller may have gone (cancelled); the send stands, a retry finds it
        future.set_result(row)


def _fail(future: asyncio.Future[asyncpg.Record], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)


class GroupCommit:
    """Concurrent sends committed together.

    A send that finds a lane free goes out at once (``chat_send``, one round
    trip). Sends arriving while ``lanes`` batches are in flight queue up, and
    the next free lane takes up to ``max_batch`` of them in one
    ``chat_send_batch`` call: one round trip and one COMMIT for all, each
    send answered as if alone. A lane keeps its pooled connection while there
    is work. If a batch fails, its sends are retried one by one, so one bad
    send never fails the others. Every answer comes after COMMIT, so callers
    still publish only what is durable.
    """

    def __init__(self, pool: asyncpg.Pool, lanes: int = SEND_LANES, max_batch: int = MAX_SEND_BATCH) -> None:
        self._pool = pool
        self._lanes = lanes
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Event()
        self._lingering = 0

    async def send(self, args: _SendArgs) -> asyncpg.Record:
        future: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        self._arrived.set()  # a lingering lane takes it
        if not self._lingering and self._busy < self._lanes:
            self._busy += 1
            task = asyncio.create_task(self._lane())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> list[_Pending]:
        batch = [item for item in self._queue[: self._max_batch] if not item[1].done()]
        del self._queue[: self._max_batch]
        return batch

    async def _lane(self) -> None:
        busy = True
        try:
            async with self._pool.acquire() as conn:
                while True:
                    while self._queue:
                        batch = self._take()
                        if batch:
                            await self._run(conn, batch)
                    self._arrived.clear()
                    self._lingering += 1
                    try:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(LANE_LINGER_SECONDS):
                                await self._arrived.wait()
                    finally:
                        self._lingering -= 1
                    if not self._queue:
                        break
                # No await between seeing the queue empty and freeing the
                # lane: a send queued from now on starts a lane of its own.
                busy = False
                self._busy -= 1
        except BaseException as exc:
            if busy:
                self._busy -= 1
                pending, self._queue = self._queue, []  # nobody is left to run them
                for _, future in pending:
                    _fail(future, exc)
            if not isinstance(exc, Exception):  # cancelled: let it through
                raise
            # Otherwise every send it concerned has the error; nothing is left to report.

    @staticmethod
    async def _run(conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                rows = [await conn.fetchrow(_SEND_SQL, *batch[0][0])]
            else:
                conversations, senders, client_ids, texts = zip(*(args for args, _ in batch), strict=True)
                rows = await conn.fetch(_SEND_BATCH_SQL, conversations, senders, client_ids, texts)
        except asyncpg.PostgresError as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            for args, future in batch:  # each on its own: only the bad one fails
                try:
                    row = await conn.fetchrow(_SEND_SQL, *args)
                except asyncpg.PostgresError as one:
                    _fail(future, one)
                else:
                    _resolve(future, row)
            return
        except BaseException as exc:
            for _, future in batch:
                _fail(future, exc)
            raise
        for (_, future), row in zip(batch, rows, strict=True):
            _resolve(future, row)


class ConversationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._sends = GroupCommit(pool)

    async def page(self, user_id: str, limit: int, after: tuple[dt.datetime, str] | None) -> list[ConversationRow]:
        """The user's open conversations, most recent activity first, each with
        the other person's card, its last message and the user's unread count,
        in one query."""
        after_at, after_id = (after[0], uuid.UUID(after[1])) if after else (None, None)
        rows = await self._pool.fetch(
            f"""SELECT c.id, c.match_id, c.created_at, c.last_activity_at, {PERSON_CARD_COLUMNS},
                      lm.id AS lm_id, lm.conversation_id AS lm_conversation_id, lm.sender AS lm_sender,
                      lm.client_id AS lm_client_id, lm.text AS lm_text, lm.created_at AS lm_created_at,
                      (SELECT count(*) FROM messages x
                       WHERE x.conversation_id = c.id AND x.id > me.last_read_message_id AND x.sender <> $1
                      ) AS unread
               FROM conversation_members me
               JOIN conversations c ON c.id = me.conversation_id
               JOIN users o ON o.id = CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END
               {PERSON_CARD_JOINS}
               LEFT JOIN messages lm ON lm.id = c.last_message_id
               WHERE me.user_id = $1 AND c.closed_at IS NULL AND o.deleted_at IS NULL
                 AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.id) < ($2, $3::uuid))
               ORDER BY c.last_activity_at DESC, c.id DESC
               LIMIT $4""",  # noqa: S608 (constant columns and joins)
            uuid.UUID(user_id),
            after_at,
            after_id,
            limit,
        )
        return [
            ConversationRow(
                id=str(r["id"]),
                match_id=str(r["match_id"]),
                created_at=r["created_at"],
                last_activity_at=r["last_activity_at"],
                other=person_card(r),
                last_message=None if r["lm_id"] is None else message_from_row(r, "lm_"),
                unread=r["unread"],
            )
            for r in rows
        ]

    async def other_member(self, conversation_id: str, user_id: str) -> str | None:
        """The other member of an open conversation the user belongs to, else None."""
        try:
            cid, uid = uuid.UUID(conversation_id), uuid.UUID(user_id)
        except ValueError:
            return None
        other = await self._pool.fetchval(
            """SELECT other.user_id
               FROM conversation_members me
               JOIN conversations c ON c.id = me.conversation_id AND c.closed_at IS NULL
               JOIN conversation_members other
                 ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id
               WHERE me.conversation_id = $1 AND me.user_id = $2""",
            cid,
            uid,
        )
        return None if other is None else str(other)

    async def is_member(self, conversation_id: str, user_id: str) -> bool:
        found = await self._pool.fetchval(
            "SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            uuid.UUID(conversation_id),
            uuid.UUID(user_id),
        )
        return found is not None

    async def messages(self, conversation_id: str, before: int | None, limit: int) -> list[Message]:
        """Messages newest first, with ids below ``before`` (if given)."""
        rows = await self._pool.fetch(
            f"""SELECT {_MESSAGE_COLUMNS} FROM messages
                WHERE conversation_id = $1 AND ($2::bigint IS NULL OR id < $2)
                ORDER BY id DESC LIMIT $3""",  # noqa: S608 (a constant column list)
            uuid.UUID(conversation_id),
            before,
            limit,
        )
        return [message_from_row(r) for r in rows]

    async def send(self, conversation_id: str, sender: str, client_id: str, text: str) -> SendOutcome:
        """One round trip: ``chat_send`` (migration 0005), or ``chat_send_batch``
        with the sends queued beside it, locks, checks, inserts and appends
        both members' events in one implicit transaction; its reply carries
        everything needed to answer and to publish."""
        row = await self._sends.send((uuid.UUID(conversation_id), uuid.UUID(sender), client_id, text))
        status = row["status"]
        if row["message_id"] is None:
            return SendOutcome(status)
        message = Message(
            row["message_id"], conversation_id, sender, client_id, row["message_text"], row["message_created_at"]
        )
        if status != SendStatus.CREATED:
            return SendOutcome(status, message)
        view = message_payload(message)  # once: both events and the sender's reply carry it
        payload = {"conversation_id": conversation_id, "message": view}
        events = (
            Event(str(row["member_a"]), row["event_id_a"], EventType.MESSAGE, payload, row["event_created_at_a"]),
            Event(str(row["member_b"]), row["event_id_b"], EventType.MESSAGE, payload, row["event_created_at_b"]),
        )
        return SendOutcome(status, message, events, view)

    async def mark_read(self, conversation_id: str, reader: str, up_to: int) -> ReadOutcome:
        """Move the reader's mark forward to ``up_to`` (a message of this
        conversation) and tell the other member; a mark never moves back.
        One round trip: ``chat_mark_read`` (migration 0005)."""
        row = await self._pool.fetchrow(_MARK_READ_SQL, uuid.UUID(conversation_id), uuid.UUID(reader), up_to)
        assert row is not None
        if row["status"] != ReadStatus.MARKED:
            return ReadOutcome(row["status"])
        if row["event_id"] is None:
            return ReadOutcome(ReadStatus.MARKED, int(row["last_read"]))
        payload = {"conversation_id": conversation_id, "reader_id": reader, "last_read_message_id": up_to}
        event = Event(str(row["other_member"]), row["event_id"], EventType.READ, payload, row["event_created_at"])
        return ReadOutcome(ReadStatus.MARKED, up_to, (event,))
