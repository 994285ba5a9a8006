"""Crossed paths in PostgreSQL: pairs of signed-in people who were nudged near
each other, as ``(user_lo, user_hi, count, last_at)``. No place, no token.

Written in batches off the hot path (features/crossed_paths.py buffers them).
A pair is not recorded while either person turned ``crossed_paths`` off, is
deleted, or a block stands between them (a block also erases the row: the
trigger in 0007_compatibility.sql). ``count`` counts crossings since the pair
last went a week without one; rows older than 14 days are pruned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import asyncpg

WEEK: Final = dt.timedelta(days=7)
RETENTION: Final = dt.timedelta(days=14)

# Both people live, opted in (no profile counts as the default: in), no block.
ELIGIBLE_PAIR_SQL: Final = """EXISTS (SELECT 1 FROM users u WHERE u.id = {lo} AND u.deleted_at IS NULL)
    AND EXISTS (SELECT 1 FROM users u WHERE u.id = {hi} AND u.deleted_at IS NULL)
    AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.user_id IN ({lo}, {hi}) AND NOT p.crossed_paths)
    AND NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker, b.blocked) IN (({lo}, {hi}), ({hi}, {lo})))"""


@dataclass(frozen=True, slots=True)
class Crossing:
    user_lo: str
    user_hi: str
    count: int
    last_at: dt.datetime


def ordered(a: str, b: str) -> tuple[str, str]:
    x, y = uuid.UUID(a), uuid.UUID(b)
    return (str(x), str(y)) if x < y else (str(y), str(x))


class CrossedPathsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_batch(self, crossings: Iterable[Crossing]) -> int:
        """Add a batch of crossings (pairs ordered, each once); returns the pairs written."""
        batch = list(crossings)
        if not batch:
            return 0
        status: str = await self._pool.execute(
            f"""INSERT INTO crossed_paths AS c (user_lo, user_hi, count, last_at)
                SELECT x.lo, x.hi, x.n, x.at
                FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[]) AS x(lo, hi, n, at)
                WHERE {ELIGIBLE_PAIR_SQL.format(lo="x.lo", hi="x.hi")}
                ON CONFLICT (user_lo, user_hi) DO UPDATE SET
                    count = CASE WHEN c.last_at < EXCLUDED.last_at - $5::interval THEN EXCLUDED.count
                                 ELSE c.count + EXCLUDED.count END,
                    last_at = GREATEST(c.last_at, EXCLUDED.last_at)""",  # noqa: S608 (constant clause)
            [c.user_lo for c in batch],
            [c.user_hi for c in batch],
            [c.count for c in batch],
            [c.last_at for c in batch],
            WEEK,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def prune(self, now: dt.datetime) -> int:
        status: str = await self._pool.execute("DELETE FROM crossed_paths WHERE last_at < $1", now - RETENTION)
        return int(status.rsplit(" ", 1)[-1])

    async def between(self, a: str, b: str, now: dt.datetime) -> int:
        """Crossings of the pair in the last week (0 when opted out or blocked)."""
        lo, hi = ordered(a, b)
        count = await self._pool.fetchval(
            f"""SELECT c.count FROM crossed_paths c
                WHERE c.user_lo = $1 AND c.user_hi = $2 AND c.last_at >= $3
                  AND {ELIGIBLE_PAIR_SQL.format(lo="c.user_lo", hi="c.user_hi")}""",  # noqa: S608
            lo,
            hi,
            now - WEEK,
        )
        return int(count or 0)
