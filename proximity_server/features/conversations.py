"""Conversations: the inbox, message history, sending and read marks.

Only the conversation's two members see it; to anyone else it does not
exist (404). Sending is idempotent by ``client_id``: a retry gets the first
copy back with 200 instead of 201. A closed conversation (unmatched or
blocked) keeps its history but refuses new messages (409). Each person may
send ``RATE_LIMIT_MESSAGES_PER_MINUTE`` messages a minute (429 with
``Retry-After``), counted in the same Redis windows as the other limits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import ErrorCode
from protocol.limits import INT64_MAX
from proximity_server.features.errors import BadRequest, Conflict, NotFound
from proximity_server.features.events import publish_committed
from proximity_server.features.pagination import (
    bad_cursor,
    cursor_int,
    decode_cursor,
    encode_cursor,
    iso,
    time_id_page,
    time_id_position,
)
from proximity_server.features.photo_urls import PhotoUrls
from proximity_server.features.profiles import person_card_view
from proximity_server.features.rate_limit import WINDOW_MS, current_window, raise_if_over
from store.conversations import (
    ConversationRow,
    ConversationStore,
    Message,
    ReadStatus,
    SendStatus,
    message_payload,
)
from store.events import EventStore
from store.rate_limit import RateLimitStore
from store.redis_keys import Keys

MAX_MESSAGE_CHARS: Final = 4000
MAX_CLIENT_ID_CHARS: Final = 64
MESSAGES_SCOPE: Final = "messages"
CONVERSATIONS_CURSOR: Final = "c"
MESSAGES_CURSOR: Final = "msg"
NO_SUCH_CONVERSATION: Final = "no such conversation"


@dataclass(frozen=True, slots=True)
class Sent:
    created: bool
    message: dict[str, Any]


def conversation_view(row: ConversationRow, urls: PhotoUrls) -> dict[str, Any]:
    return {
        "conversation_id": row.id,
        "match_id": row.match_id,
        "created_at": iso(row.created_at),
        "last_activity_at": iso(row.last_activity_at),
        "user": person_card_view(row.other, urls),
        "last_message": None if row.last_message is None else message_payload(row.last_message),
        "unread_count": row.unread,
    }


def message_text(value: object) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(text) <= MAX_MESSAGE_CHARS:
        raise BadRequest(
            f"'text' must be 1 to {MAX_MESSAGE_CHARS} characters (after trimming)", code=ErrorCode.INVALID_FIELD
        )
    return text


def client_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID_CHARS:
        raise BadRequest(
            f"'client_id' must be a string of 1 to {MAX_CLIENT_ID_CHARS} characters", code=ErrorCode.INVALID_FIELD
        )
    return value


def before_id(query: Mapping[str, str]) -> int | None:
    """``?cursor=`` or ``?before=``, not both. Either takes the ``next_cursor``
    of the previous page; ``before`` also takes a message id."""
    cursor, before = query.get("cursor"), query.get("before")
    if cursor is not None and before is not None:
        raise BadRequest("send 'cursor' or 'before', not both", code=ErrorCode.INVALID_FIELD)
    if cursor is not None:
        return _message_cursor(cursor)
    if before is not None:
        if not (before.isascii() and before.isdigit()):  # a cursor is base64 of "msg:…", never all digits
            return _message_cursor(before)
        number = int(before)
        if number > INT64_MAX:
            raise bad_cursor()
        return number
    return None


def _message_cursor(cursor: str) -> int:
    (value,) = decode_cursor(cursor, MESSAGES_CURSOR, 1)
    return cursor_int(value)


class ConversationService:
    def __init__(
        self,
        store: ConversationStore,
        events: EventStore,
        limits: RateLimitStore,
        keys: Keys,
        per_minute: int,
        urls: PhotoUrls,
    ) -> None:
        self._store = store
        self._urls = urls  # signed photo URLs on the conversation cards
        self._events = events
        self._limits = limits
        self._keys = keys
        self.messages_per_minute = per_minute

    @property
    def store(self) -> ConversationStore:
        """The feature's store, for the look-ups other parts need (the user socket's)."""
        return self._store

    async def inbox(self, viewer_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        after = time_id_position(cursor, CONVERSATIONS_CURSOR)
        rows = await self._store.page(viewer_id, limit + 1, after)
        page, next_cursor = time_id_page(rows, limit, CONVERSATIONS_CURSOR, lambda r: (r.last_activity_at, r.id))
        return {"items": [conversation_view(r, self._urls) for r in page], "next_cursor": next_cursor}

    async def messages(
        self, viewer_id: str, conversation_id: str, limit: int, query: Mapping[str, str]
    ) -> dict[str, Any]:
        before = before_id(query)
        if not await self._store.is_member(conversation_id, viewer_id):
            raise NotFound(NO_SUCH_CONVERSATION)
        rows = await self._store.messages(conversation_id, before, limit + 1)
        page: list[Message] = rows[:limit]
        next_cursor = encode_cursor(MESSAGES_CURSOR, str(page[-1].id)) if len(rows) > limit else None
        return {"items": [message_payload(m) for m in page], "next_cursor": next_cursor}

    async def _check_rate(self, user_id: str) -> None:
        window = current_window(int(time.time() * 1000))
        hits = await self._limits.hit_one(self._keys.rate_limit(MESSAGES_SCOPE, user_id, window.index), WINDOW_MS)
        raise_if_over(hits, self.messages_per_minute, window)

    async def send(self, viewer_id: str, conversation_id: str, data: Mapping[str, Any]) -> Sent:
        cid, text = client_id(data["client_id"]), message_text(data["text"])
        await self._check_rate(viewer_id)
        outcome = await self._store.send(conversation_id, viewer_id, cid, text)
        if outcome.status == SendStatus.NOT_FOUND:
            raise NotFound(NO_SUCH_CONVERSATION)
        if outcome.status == SendStatus.CLOSED:
            raise Conflict("this conversation is closed")
        if outcome.status == SendStatus.CLIENT_ID_REUSED:
            raise Conflict("this client_id was already used for another message")
        assert outcome.message is not None
        await publish_committed(self._events, outcome.events)
        view = outcome.view if outcome.view is not None else message_payload(outcome.message)
        return Sent(outcome.status == SendStatus.CREATED, view)

    async def mark_read(self, viewer_id: str, conversation_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        up_to = data["up_to"]
        if not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 1:
            raise BadRequest("'up_to' must be a message id", code=ErrorCode.INVALID_FIELD)
        outcome = await self._store.mark_read(conversation_id, viewer_id, up_to)
        if outcome.status == ReadStatus.NOT_FOUND:
            raise NotFound(NO_SUCH_CONVERSATION)
        if outcome.status == ReadStatus.NO_SUCH_MESSAGE:
            raise BadRequest("'up_to' is not a message of this conversation", code=ErrorCode.INVALID_FIELD)
        await publish_committed(self._events, outcome.events)
        return {"conversation_id": conversation_id, "last_read_message_id": outcome.last_read_message_id}
