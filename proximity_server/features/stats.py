"""Aggregate statistics for admins, and the counter flusher.

Counters are bumped in Redis on the hot path; :class:`CounterFlusher` moves
them to PostgreSQL every few seconds and once more on shutdown, so a restart
loses none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from proximity_server.features.errors import Forbidden, Unauthorized
from proximity_server.features.taxonomy import OTHER_CATEGORY
from store.stats import StatsStore

log = logging.getLogger(__name__)

TOP_CATEGORIES: Final = 5


def check_admin(presented: str | None, admin_token: str | None) -> None:
    if not presented:
        raise Unauthorized("send the admin token as 'Authorization: Bearer <token>'")
    if admin_token is None or not hmac.compare_digest(presented.encode(), admin_token.encode()):
        raise Forbidden("this token may not read statistics")


async def today_stats(store: StatsStore, min_count: int = 1) -> dict[str, Any]:
    """Today's figures; a category counted fewer than ``min_count`` times is
    left out of the ranking (small counts are never shown)."""
    now = time.time()
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    stats = await store.day_stats(day, int(now * 1000))
    ranked = sorted(
        ((n, c) for c, n in stats.category_counts.items() if c != OTHER_CATEGORY and n > 0 and n >= min_count),
        key=lambda item: (-item[0], item[1]),
    )
    return {
        "total_sessions_today": stats.total_sessions,
        "total_matches_today": stats.total_matches,
        "top_interest_categories": [category for _, category in ranked[:TOP_CATEGORIES]],
        "active_sessions_now": stats.active_sessions,
    }


def utc_today(now: float | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date()


class ActiveUsers:
    """The users seen by this process (an authenticated request or socket),
    per UTC day, until the flusher hands them to the day's HyperLogLog."""

    def __init__(self) -> None:
        self._days: dict[dt.date, set[str]] = {}

    def seen(self, user_id: str) -> None:
        self._days.setdefault(utc_today(), set()).add(user_id)

    def drain(self) -> dict[dt.date, set[str]]:
        days, self._days = self._days, {}
        return days

    def put_back(self, days: dict[dt.date, set[str]]) -> None:
        for day, users in days.items():
            self._days.setdefault(day, set()).update(users)


class CounterFlusher:
    def __init__(
        self,
        store: StatsStore,
        interval: float,
        active: ActiveUsers | None = None,
        socket_users: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self._store = store
        self._interval = interval
        self._active = active
        self._socket_users = socket_users
        self.last_flush_at: float | None = None

    async def flush_active_users(self) -> None:
        """Users seen (or holding a socket) go to the day's sketch; its count to PostgreSQL."""
        if self._active is None:
            return
        if self._socket_users is not None:
            for user_id in self._socket_users():
                self._active.seen(user_id)
        days = self._active.drain()
        try:
            for day, users in sorted(days.items()):
                await self._store.record_active_users(day, sorted(users))
        except Exception:
            self._active.put_back(days)
            raise

    async def flush_once(self) -> int:
        await self.flush_active_users()
        moved = await self._store.flush()
        await self._store.prune_expired_sessions(int(time.time() * 1000))
        self.last_flush_at = time.time()
        return moved

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush_once()
            except Exception as exc:
                log.warning("counter flush failed; will retry", extra={"error": repr(exc)})
