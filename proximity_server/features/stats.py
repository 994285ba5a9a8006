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


async def today_stats(store: StatsStore) -> dict[str, Any]:
    now = time.time()
    day = dt.datetime.fromtimestamp(now, dt.UTC).date()
    stats = await store.day_stats(day, int(now * 1000))
    ranked = sorted(
        ((n, c) for c, n in stats.category_counts.items() if c != OTHER_CATEGORY and n > 0),
        key=lambda item: (-item[0], item[1]),
    )
    return {
        "total_sessions_today": stats.total_sessions,
        "total_matches_today": stats.total_matches,
        "top_interest_categories": [category for _, category in ranked[:TOP_CATEGORIES]],
        "active_sessions_now": stats.active_sessions,
    }


class CounterFlusher:
    def __init__(self, store: StatsStore, interval: float) -> None:
        self._store = store
        self._interval = interval
        self.last_flush_at: float | None = None

    async def flush_once(self) -> int:
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
