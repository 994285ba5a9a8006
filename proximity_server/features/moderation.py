"""Moderation: the report queue, resolving reports, bans.

An admin sees a person's data only where a report makes it necessary: the
reported person's public card, how many reports name them, and the messages
of the conversation between reporter and reported (no other conversation).

A ban takes effect at once on every process: the user's ``tokens_valid_after``
moves to now (PostgreSQL and the Redis cache every request checks), their
refresh tokens are revoked, a "ban" event on their channel closes their
sockets with 4403, their proximity sessions end, their profile disappears
from discovery and profile views (404), and login answers 403 ``banned``.
Lifting the ban restores all of it (nothing was deleted); they sign in again.
Every action is written to the audit trail in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.errors import BadRequest, Conflict, NotFound
from proximity_server.features.pagination import iso, page_limit, time_id_page, time_id_position
from proximity_server.features.photo_urls import PhotoUrls
from proximity_server.features.profiles import person_card_view
from store.admin import AdminStore, BanSignals, ReportMessage, ReportRow

RESOLUTIONS: Final = ("dismiss", "warn", "ban")
REPORT_STATUSES: Final = ("open", "resolved")
REPORTS_CURSOR: Final = "reports"
MAX_REASON_LENGTH: Final = 2000


def _reason(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON_LENGTH:
        raise BadRequest(
            f"'{name}' must be a non-empty string of at most {MAX_REASON_LENGTH} characters",
            code=ErrorCode.INVALID_FIELD,
        )
    return value.strip()


def check_user_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound("no such user") from None


def message_view(message: ReportMessage) -> dict[str, Any]:
    return {"id": message.id, "sender_id": message.sender, "text": message.text, "created_at": iso(message.created_at)}


class ModerationService:
    def __init__(self, store: AdminStore, signals: BanSignals, urls: PhotoUrls) -> None:
        self._store = store
        self._signals = signals
        self._urls = urls

    async def _report_view(self, report: ReportRow) -> dict[str, Any]:
        messages = await self._store.conversation_between(report.reporter, report.reported.user_id)
        return {
            "id": report.id,
            "reason": report.reason,
            "details": report.details,
            "created_at": iso(report.created_at),
            "status": "open" if report.resolved_at is None else "resolved",
            "resolved_at": None if report.resolved_at is None else iso(report.resolved_at),
            "resolution": report.resolution,
            "resolution_note": report.resolution_note,
            "reporter_id": report.reporter,
            "reported": {
                **person_card_view(report.reported, self._urls),
                "banned": report.reported_banned,
                "reports_total": report.reports_against,
            },
            "messages": [message_view(m) for m in messages],
        }

    async def reports(self, query: Mapping[str, str]) -> dict[str, Any]:
        status = query.get("status", "open")
        if status not in REPORT_STATUSES:
            raise BadRequest("'status' must be 'open' or 'resolved'", code=ErrorCode.INVALID_FIELD)
        limit = page_limit(query)
        after = time_id_position(query.get("cursor"), REPORTS_CURSOR)
        rows = await self._store.reports_page(status == "resolved", after, limit)
        page, next_cursor = time_id_page(rows, limit, REPORTS_CURSOR, lambda r: (r.created_at, r.id))
        return {"reports": [await self._report_view(r) for r in page], "next_cursor": next_cursor}

    async def resolve(self, actor: str, report_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        action = data.get("action")
        if action not in RESOLUTIONS:
            raise BadRequest("'action' must be one of: dismiss, warn, ban", code=ErrorCode.INVALID_FIELD)
        note = _reason(data, "note")
        try:
            rid = str(uuid.UUID(report_id))
        except ValueError:
            raise NotFound("no such report") from None
        parties = await self._store.report_parties(rid)
        if parties is None:
            raise NotFound("no such report")
        if parties[1]:
            raise Conflict("this report is resolved already")
        if action == "ban":
            await self._ban(actor, parties[0], note, rid)
        reported = await self._store.resolve_report(actor, rid, str(action), note)
        if reported is None:
            raise Conflict("this report is resolved already")
        return {"id": rid, "status": "resolved", "resolution": action, "reported_id": reported}

    async def ban(self, actor: str, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        await self._ban(actor, check_user_id(user_id), _reason(data, "reason"), None)
        return {"user_id": user_id, "banned": True}

    async def unban(self, actor: str, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        uid = check_user_id(user_id)
        reason = str(data.get("reason") or "ban lifted")[:MAX_REASON_LENGTH]
        if not await self._store.set_banned(actor, uid, False, reason):
            raise NotFound("no such user")
        return {"user_id": uid, "banned": False}

    async def _ban(self, actor: str, user_id: str, reason: str, report_id: str | None) -> None:
        if not await self._store.set_banned(actor, user_id, True, reason, report_id):
            raise NotFound("no such user")
        valid_after = await self._store.tokens_valid_after_ms(user_id)
        if valid_after is not None:
            await self._signals.announce(user_id, valid_after)
        await self._signals.end_sessions(user_id)
