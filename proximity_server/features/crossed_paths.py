"""Crossed paths: a decision listener that buffers new nudges between two
signed-in people in memory, and a flusher that writes the buffer to
PostgreSQL in batches every few seconds (and once more on shutdown), like
the counter flusher. The hot path only touches a dict.

A process that dies loses at most one interval of crossings: an accepted
trade for keeping the nudge path free of database writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Final

from store.crossed_paths import CrossedPathsStore, Crossing, ordered
from store.proximity import MatchDecision

log = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS: Final = 5.0
PRUNE_INTERVAL_SECONDS: Final = 3600.0
MAX_BUFFERED_PAIRS: Final = 100_000  # beyond this, crossings are dropped until the next flush


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CrossedPaths:
    def __init__(
        self,
        store: CrossedPathsStore,
        interval: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._store = store
        self._interval = interval
        self._clock = clock
        self._pending: dict[tuple[str, str], tuple[int, dt.datetime]] = {}
        self.dropped = 0

    def observe(self, decision: MatchDecision) -> None:
        """Decision listener (hot path): remember a new nudge between two users."""
        if not decision.nudged or decision.users is None:
            return
        a, b = decision.users
        if a == b:
            return
        pair = ordered(a, b)
        seen = self._pending.get(pair)
        if seen is None and len(self._pending) >= MAX_BUFFERED_PAIRS:
            self.dropped += 1
            return
        self._pending[pair] = ((seen[0] if seen else 0) + 1, self._clock())

    async def flush_once(self) -> int:
        pending, self._pending = self._pending, {}
        batch = [Crossing(lo, hi, n, at) for (lo, hi), (n, at) in pending.items()]
        try:
            return await self._store.record_batch(batch)
        except Exception:
            for crossing in batch:  # put them back for the next try
                key = (crossing.user_lo, crossing.user_hi)
                n, at = self._pending.get(key, (0, crossing.last_at))
                self._pending[key] = (n + crossing.count, max(at, crossing.last_at))
            raise

    async def prune(self) -> int:
        return await self._store.prune(self._clock())

    async def run(self) -> None:
        since_prune = PRUNE_INTERVAL_SECONDS
        while True:
            await asyncio.sleep(self._interval)
            since_prune += self._interval
            try:
                await self.flush_once()
                if since_prune >= PRUNE_INTERVAL_SECONDS:
                    since_prune = 0.0
                    await self.prune()
            except Exception as exc:
                log.warning("crossed paths flush failed; will retry", extra={"error": repr(exc)})
