"""The admin console's logic: who is an admin, the audit trail, and the
statistics over time with small counts hidden.

An admin is either a script holding ``ADMIN_TOKEN`` or a person whose email
is in ``ADMIN_EMAILS``: they sign in with the normal login and their access
token carries ``"role": "admin"``. Anyone else is refused: 401 without a
credential (or with an invalid access token), 403 with a valid one that is
not an admin's.

Small counts (privacy). A cell of ``GET /stats/history`` under
``STATS_MIN_COUNT`` is ``null`` and flagged hidden. Cells are fixed per UTC
bucket (a query's range never changes a cell) and no range totals are
published, so subtracting two queries reveals nothing. The one sum that is
published is a day's count, which is the sum of its hours: so the hours of a
day are a group, and whenever a group has hidden cells, more are hidden
(smallest first) until at least two are hidden and together they hold at
least ``STATS_MIN_COUNT`` — no hidden hour can be worked out from the day.
``nudges`` is twice ``matches`` (each proximity match nudges both people), so
it is hidden exactly where ``matches`` is.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.accounts import AccountService
from proximity_server.features.errors import BadRequest, Forbidden, Unauthorized
from proximity_server.features.pagination import cursor_int, decode_cursor, encode_cursor, iso, page_limit
from store.admin import CATEGORY_PREFIX, COUNTER_SERIES, ROW_COUNT_SERIES, TOKEN_ACTOR, AdminStore, AuditEntry

ADMIN_ONLY: Final = "this route is for admins"
MISSING_ADMIN_CREDENTIAL: Final = "send an admin's access token or the admin token as 'Authorization: Bearer <token>'"
JWT_DOTS: Final = 2
NUDGES_PER_MATCH: Final = 2
HOURS_PER_DAY: Final = 24
MAX_DAY_BUCKETS: Final = 366
MAX_HOUR_BUCKETS: Final = 14 * 24
DEFAULT_DAYS: Final = 30
DEFAULT_HOURS: Final = 48
AUDIT_CURSOR: Final = "audit"
SERIES: Final = ("sessions", "matches", "nudges", *ROW_COUNT_SERIES)
STEP: Final = {"day": dt.timedelta(days=1), "hour": dt.timedelta(hours=1)}


async def admin_actor(accounts: AccountService, admin_token: str | None, presented: str | None) -> str:
    """Who is acting: ``admin-token`` or the admin's user id. Raises 401/403."""
    if not presented:
        raise Unauthorized(MISSING_ADMIN_CREDENTIAL)
    if admin_token is not None and hmac.compare_digest(presented.encode(), admin_token.encode()):
        return TOKEN_ACTOR
    if presented.count(".") != JWT_DOTS:
        raise Forbidden(ADMIN_ONLY)
    claims = await accounts.verify_access(presented)
    if not claims.admin:
        raise Forbidden(ADMIN_ONLY)
    return claims.user_id


# -- small counts --------------------------------------------------------------


def primary_hidden(values: Sequence[int], min_count: int) -> list[bool]:
    return [v < min_count for v in values]


def protect_group(values: Sequence[int], hidden: list[bool], min_count: int) -> None:
    """Complementary suppression for cells whose sum is published: hide more
    (smallest first) until no hidden cell is alone and the hidden ones hold
    at least ``min_count`` together, or everything is hidden."""
    if not any(hidden):
        return
    while True:
        hidden_values = [v for v, h in zip(values, hidden, strict=True) if h]
        if len(hidden_values) >= 2 and sum(hidden_values) >= min_count:
            return
        visible = [i for i, h in enumerate(hidden) if not h]
        if not visible:
            return
        hidden[min(visible, key=lambda i: (values[i], i))] = True


def suppress(buckets: Sequence[dt.datetime], values: Sequence[int], granularity: str, min_count: int) -> list[bool]:
    hidden = primary_hidden(values, min_count)
    if granularity == "hour":
        groups: dict[dt.date, list[int]] = {}
        for i, bucket in enumerate(buckets):
            groups.setdefault(bucket.date(), []).append(i)
        for indexes in groups.values():
            group_hidden = [hidden[i] for i in indexes]
            protect_group([values[i] for i in indexes], group_hidden, min_count)
            for i, h in zip(indexes, group_hidden, strict=True):
                hidden[i] = h
    return hidden


def cells(values: Sequence[int], hidden: Sequence[bool]) -> dict[str, list[Any]]:
    return {"values": [None if h else v for v, h in zip(values, hidden, strict=True)], "hidden": list(hidden)}


# -- parameters ------------------------------------------------------------------


def _floor(moment: dt.datetime, granularity: str) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    if granularity == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _moment(query: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'{name}' must be an ISO date or date-time", code=ErrorCode.INVALID_FIELD) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def history_range(query: Mapping[str, str], now: dt.datetime) -> tuple[str, list[dt.datetime]]:
    """The granularity and the buckets (first..last, inclusive) a query asks for."""
    granularity = query.get("granularity", "day")
    if granularity not in STEP:
        raise BadRequest("'granularity' must be 'day' or 'hour'", code=ErrorCode.INVALID_FIELD)
    step = STEP[granularity]
    last = _floor(_moment(query, "to") or now, granularity)
    default_span = DEFAULT_DAYS if granularity == "day" else DEFAULT_HOURS
    first = _floor(_moment(query, "from") or last - step * (default_span - 1), granularity)
    limit = MAX_DAY_BUCKETS if granularity == "day" else MAX_HOUR_BUCKETS
    if first > last:
        raise BadRequest("'from' must not be after 'to'", code=ErrorCode.INVALID_FIELD)
    if (last - first) // step + 1 > limit:
        raise BadRequest(f"at most {limit} {granularity}s per query", code=ErrorCode.INVALID_FIELD)
    count = (last - first) // step + 1
    return granularity, [first + step * i for i in range(count)]


# -- the service -------------------------------------------------------------------


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target_user_id": entry.target_user,
        "report_id": entry.report_id,
        "reason": entry.reason,
    }


class AdminService:
    def __init__(self, store: AdminStore, min_count: int) -> None:
        self._store = store
        self.min_count = min_count

    async def audit(self, query: Mapping[str, str]) -> dict[str, Any]:
        limit = page_limit(query)
        cursor = query.get("cursor")
        before = None if cursor is None else cursor_int(decode_cursor(cursor, AUDIT_CURSOR, 1)[0])
        rows = await self._store.audit_page(before, limit)
        page = rows[:limit]
        next_cursor = encode_cursor(AUDIT_CURSOR, str(page[-1].id)) if len(rows) > limit else None
        return {"entries": [audit_view(e) for e in page], "next_cursor": next_cursor}

    async def _values(self, metric: str, granularity: str, buckets: list[dt.datetime]) -> list[int]:
        found = await self._store.series(metric, granularity, buckets[0], buckets[-1] + STEP[granularity])
        return [found.get(b, 0) for b in buckets]

    async def history(self, query: Mapping[str, str], now: dt.datetime) -> dict[str, Any]:
        granularity, wanted = history_range(query, now)
        # Hours are protected per whole day: read whole days, answer the range.
        buckets = wanted
        if granularity == "hour":
            first_day = _floor(wanted[0], "day")
            days = (_floor(wanted[-1], "day") - first_day).days + 1
            buckets = [first_day + STEP["hour"] * i for i in range(days * HOURS_PER_DAY)]
        keep = slice(buckets.index(wanted[0]), buckets.index(wanted[-1]) + 1)

        def view(values: list[int], hidden: list[bool]) -> dict[str, list[Any]]:
            return cells(values[keep], hidden[keep])

        series: dict[str, Any] = {}
        for metric in (*COUNTER_SERIES, *ROW_COUNT_SERIES):
            values = await self._values(metric, granularity, buckets)
            hidden = suppress(buckets, values, granularity, self.min_count)
            series[metric] = view(values, hidden)
            if metric == "matches":
                series["nudges"] = view([v * NUDGES_PER_MATCH for v in values], hidden)
        if granularity == "day":
            values = await self._values("daily_active_users", granularity, buckets)
            series["daily_active_users"] = view(values, suppress(buckets, values, granularity, self.min_count))
        categories: dict[str, Any] = {}
        for category in await self._store.categories_seen(buckets[0], buckets[-1] + dt.timedelta(days=1)):
            values = await self._values(CATEGORY_PREFIX + category, granularity, buckets)
            categories[category] = view(values, suppress(buckets, values, granularity, self.min_count))
        return {
            "granularity": granularity,
            "from": iso(wanted[0]),
            "to": iso(wanted[-1]),
            "min_count": self.min_count,
            "buckets": [iso(b) for b in wanted],
            "series": series,
            "category_sessions": categories,
        }
