"""Likes and passes, matches, blocks and reports.

A mutual like opens exactly one match and one conversation (see
``store/likes.py`` for how concurrent likes agree) and tells both people
through their event logs. Liking is idempotent. Someone who blocked you is
indistinguishable from an unknown user (404); someone you blocked is 409
until you unblock them. Blocking ends any match.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.errors import BadRequest, Conflict, NotFound
from proximity_server.features.events import publish_committed
from proximity_server.features.pagination import (
    iso,
    time_id_page,
    time_id_position,
)
from proximity_server.features.photo_urls import PhotoUrls
from proximity_server.features.profiles import person_card_view
from store.events import EventStore
from store.hidden import HiddenPairs
from store.likes import LIKE, PASS, LikeStatus, LikeStore, MatchRow
from store.presence import Presence, PresenceStore

LIKE_ACTIONS: Final = frozenset({LIKE, PASS})
REPORT_REASONS: Final = ("spam", "harassment", "inappropriate_content", "fake_profile", "underage", "scam", "other")
MAX_REPORT_DETAILS: Final = 2000
MATCHES_CURSOR: Final = "m"
NO_SUCH_USER: Final = "no such user"


def target_user_id(value: object, viewer_id: str, field: str = "user_id") -> str:
    """A user id from a body or path, in canonical form; yourself is 400."""
    try:
        user_id = str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        user_id = None
    if user_id is None:
        raise BadRequest(f"'{field}' must be a user id", code=ErrorCode.INVALID_FIELD)
    if user_id == viewer_id:
        raise BadRequest("that is you", code=ErrorCode.INVALID_FIELD)
    return user_id


def match_view(row: MatchRow, urls: PhotoUrls, presence: Presence | None = None) -> dict[str, Any]:
    view = {
        "match_id": row.match_id,
        "conversation_id": row.conversation_id,
        "created_at": iso(row.created_at),
        "user": person_card_view(row.other, urls),
    }
    if presence is not None:
        last_seen = presence.last_seen_ms
        view["presence"] = {
            "online": presence.online,
            "last_seen": None if last_seen is None else iso(dt.datetime.fromtimestamp(last_seen / 1000, dt.UTC)),
        }
    return view


class LikeService:
    def __init__(
        self,
        store: LikeStore,
        events: EventStore,
        urls: PhotoUrls,
        hidden: HiddenPairs | None = None,
        presence: PresenceStore | None = None,
    ) -> None:
        self._store = store
        self._urls = urls  # signed photo URLs on the match cards
        self._events = events
        self._presence = presence  # matches see each other's presence
        self._hidden = hidden  # mirrors blocks for the proximity hot path

    @property
    def store(self) -> LikeStore:
        """The feature's store, for the look-ups other parts need (the user socket's)."""
        return self._store

    async def like(self, viewer_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        target = target_user_id(data["user_id"], viewer_id)
        action = data["action"]
        if action not in LIKE_ACTIONS:
            raise BadRequest("'action' must be 'like' or 'pass'", code=ErrorCode.INVALID_FIELD)
        outcome = await self._store.like(viewer_id, target, action)
        if outcome.status in (LikeStatus.UNKNOWN_USER, LikeStatus.BLOCKED_BY_THEM):
            raise NotFound(NO_SUCH_USER)
        if outcome.status == LikeStatus.BLOCKED_BY_YOU:
            raise Conflict("you blocked this user; unblock them first")
        await publish_committed(self._events, outcome.events)
        if outcome.status != LikeStatus.MATCHED:
            return {"matched": False}
        return {"matched": True, "match_id": outcome.match_id, "conversation_id": outcome.conversation_id}

    async def matches(self, viewer_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
        after = time_id_position(cursor, MATCHES_CURSOR)
        rows = await self._store.matches_page(viewer_id, limit + 1, after)
        page, next_cursor = time_id_page(rows, limit, MATCHES_CURSOR, lambda r: (r.created_at, r.match_id))
        states = await self._presence.lookup([r.other.user_id for r in page]) if self._presence else {}
        items = [match_view(r, self._urls, states.get(r.other.user_id)) for r in page]
        return {"items": items, "next_cursor": next_cursor}

    async def unmatch(self, viewer_id: str, match_id: str) -> None:
        ended = await self._store.unmatch(viewer_id, match_id)
        if ended is None:
            raise NotFound("no such match")
        await publish_committed(self._events, ended.events)

    async def block(self, viewer_id: str, data: Mapping[str, Any]) -> None:
        target = target_user_id(data["user_id"], viewer_id)
        outcome = await self._store.block(viewer_id, target)
        if not outcome.known_user:
            raise NotFound(NO_SUCH_USER)
        if self._hidden is not None:
            await self._hidden.hide(viewer_id, target)
        if outcome.ended is not None:
            await publish_committed(self._events, outcome.ended.events)

    async def unblock(self, viewer_id: str, user_id: str) -> None:
        if not await self._store.unblock(viewer_id, user_id):
            raise NotFound("you have not blocked this user")
        if self._hidden is not None and not await self._store.blocked_either_way(viewer_id, user_id):
            await self._hidden.unhide(viewer_id, user_id)

    async def report(self, viewer_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        target = target_user_id(data["user_id"], viewer_id)
        reason = data["reason"]
        if reason not in REPORT_REASONS:
            raise BadRequest(f"'reason' must be one of: {', '.join(REPORT_REASONS)}", code=ErrorCode.INVALID_FIELD)
        details = data.get("details", "")
        if not isinstance(details, str) or len(details.strip()) > MAX_REPORT_DETAILS:
            raise BadRequest(
                f"'details' must be a string of at most {MAX_REPORT_DETAILS} characters", code=ErrorCode.INVALID_FIELD
            )
        report_id = await self._store.report(viewer_id, target, reason, details.strip())
        if report_id is None:
            raise NotFound(NO_SUCH_USER)
        return {"report_id": report_id}
