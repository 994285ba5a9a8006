"""Conversations (one per match), their messages and the members' read marks.

Sending is one round trip: the ``chat_send`` function (migration 0005) runs
in one implicit transaction. It locks the conversation row (``FOR UPDATE``):
sends in one conversation queue up, so message ids commit in increasing order
within it and ``last_message_id`` always points at the newest one; an unmatch
that closes the conversation waits for (or is waited on by) a send, never
races it. A message and its ``message`` events for both members commit
together. A retried send (same sender, same ``client_id``) finds the first
copy.

Lock order: conversation row, then member rows, then event counters.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from store.events import Event, EventType, append_event_in_transaction

_MESSAGE_COLUMNS: Final = "id, conversation_id, sender, client_id, text, created_at"
_SEND_SQL: Final = "SELECT * FROM chat_send($1, $2, $3, $4)"


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
    other_user_id: str
    other_display_name: str | None
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


class ConversationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(self, user_id: str, limit: int, after: tuple[dt.datetime, str] | None) -> list[ConversationRow]:
        """The user's open conversations, most recent activity first, each with
        its last message and the user's unread count."""
        after_at, after_id = (after[0], uuid.UUID(after[1])) if after else (None, None)
        rows = await self._pool.fetch(
            """SELECT c.id, c.match_id, c.created_at, c.last_activity_at, o.id AS other_id, p.display_name,
                      lm.id AS lm_id, lm.conversation_id AS lm_conversation_id, lm.sender AS lm_sender,
                      lm.client_id AS lm_client_id, lm.text AS lm_text, lm.created_at AS lm_created_at,
                      (SELECT count(*) FROM messages x
                       WHERE x.conversation_id = c.id AND x.id > me.last_read_message_id AND x.sender <> $1
                      ) AS unread
               FROM conversation_members me
               JOIN conversations c ON c.id = me.conversation_id
               JOIN users o ON o.id = CASE WHEN c.user_a = $1 THEN c.user_b ELSE c.user_a END
               LEFT JOIN profiles p ON p.user_id = o.id
               LEFT JOIN messages lm ON lm.id = c.last_message_id
               WHERE me.user_id = $1 AND c.closed_at IS NULL AND o.deleted_at IS NULL
                 AND ($2::timestamptz IS NULL OR (c.last_activity_at, c.id) < ($2, $3::uuid))
               ORDER BY c.last_activity_at DESC, c.id DESC
               LIMIT $4""",
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
                other_user_id=str(r["other_id"]),
                other_display_name=r["display_name"],
                last_message=None if r["lm_id"] is None else message_from_row(r, "lm_"),
                unread=r["unread"],
            )
            for r in rows
        ]

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
        """One round trip: ``chat_send`` (migration 0005) locks, checks,
        inserts and appends both members' events in one implicit transaction;
        its reply carries everything needed to answer and to publish."""
        row = await self._pool.fetchrow(_SEND_SQL, uuid.UUID(conversation_id), uuid.UUID(sender), client_id, text)
        assert row is not None
        status = row["status"]
        if row["message_id"] is None:
            return SendOutcome(status)
        message = Message(
            row["message_id"], conversation_id, sender, client_id, row["message_text"], row["message_created_at"]
        )
        if status != SendStatus.CREATED:
            return SendOutcome(status, message)
        payload = {"conversation_id": conversation_id, "message": message_payload(message)}
        events = (
            Event(str(row["member_a"]), row["event_id_a"], EventType.MESSAGE, payload, row["event_created_at_a"]),
            Event(str(row["member_b"]), row["event_id_b"], EventType.MESSAGE, payload, row["event_created_at_b"]),
        )
        return SendOutcome(status, message, events)

    async def mark_read(self, conversation_id: str, reader: str, up_to: int) -> ReadOutcome:
        """Move the reader's mark forward to ``up_to`` (a message of this
        conversation) and tell the other member; a mark never moves back."""
        cid, me = uuid.UUID(conversation_id), uuid.UUID(reader)
        async with self._pool.acquire() as conn, conn.transaction():
            conv = await conn.fetchrow(
                "SELECT user_a, user_b FROM conversations WHERE id = $1 AND $2 IN (user_a, user_b)", cid, me
            )
            if conv is None:
                return ReadOutcome(ReadStatus.NOT_FOUND)
            exists = await conn.fetchval("SELECT 1 FROM messages WHERE id = $1 AND conversation_id = $2", up_to, cid)
            if exists is None:
                return ReadOutcome(ReadStatus.NO_SUCH_MESSAGE)
            moved = await conn.fetchval(
                """UPDATE conversation_members SET last_read_message_id = $3
                   WHERE conversation_id = $1 AND user_id = $2 AND last_read_message_id < $3
                   RETURNING last_read_message_id""",
                cid,
                me,
                up_to,
            )
            if moved is None:
                current = await conn.fetchval(
                    "SELECT last_read_message_id FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
                    cid,
                    me,
                )
                return ReadOutcome(ReadStatus.MARKED, int(current))
            other = conv["user_b"] if conv["user_a"] == me else conv["user_a"]
            event = await append_event_in_transaction(
                conn,
                str(other),
                EventType.READ,
                {"conversation_id": conversation_id, "reader_id": reader, "last_read_message_id": up_to},
            )
            return ReadOutcome(ReadStatus.MARKED, up_to, (event,))
