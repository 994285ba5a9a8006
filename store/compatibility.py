"""What scoring two people needs beyond their profiles, for many at once:
each person's attachment style, days since they were last active, and how
often they crossed paths with the viewer this week.

One query for a whole page (``unnest`` of the ids), each signal an indexed
look-up per person: ``attachment_assessments`` key,
``refresh_tokens_user_created_idx``, ``crossed_paths`` key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

CROSSINGS_WINDOW: Final = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Signals:
    style: str | None
    days_since_active: float | None
    crossings: int  # with the viewer; 0 when either turned crossed paths off


class CompatibilityStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def signals(
        self, viewer_id: str, viewer_crossed_paths: bool, user_ids: Sequence[str], now: dt.datetime
    ) -> dict[str, Signals]:
        """Signals of the viewer and of each of ``user_ids``, keyed by id (live users only)."""
        rows = await self._pool.fetch(
            """SELECT u.id AS user_id, a.style,
                      (SELECT extract(epoch FROM $3::timestamptz - max(t.created_at)) / 86400
                       FROM refresh_tokens t WHERE t.user_id = u.id) AS days_since_active,
                      CASE WHEN u.id = $1::uuid OR NOT $5::boolean OR NOT COALESCE(p.crossed_paths, false) THEN 0
                      ELSE COALESCE((SELECT c.count FROM crossed_paths c
                                     WHERE c.user_lo = least($1::uuid, u.id) AND c.user_hi = greatest($1::uuid, u.id)
                                       AND c.last_at >= $3::timestamptz - $4::interval), 0) END AS crossings
               FROM (SELECT DISTINCT unnest($2::uuid[] || $1::uuid) AS id) ids
               JOIN users u ON u.id = ids.id
               LEFT JOIN profiles p ON p.user_id = u.id
               LEFT JOIN attachment_assessments a ON a.user_id = u.id
               WHERE u.deleted_at IS NULL""",
            viewer_id,
            list(user_ids),
            now,
            CROSSINGS_WINDOW,
            viewer_crossed_paths,
        )
        return {
            str(r["user_id"]): Signals(
                r["style"],
                None if r["days_since_active"] is None else float(r["days_since_active"]),
                int(r["crossings"]),
            )
            for r in rows
        }
