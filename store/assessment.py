"""Attachment assessments in PostgreSQL: one row per person, replaced on retake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
import orjson


@dataclass(frozen=True, slots=True)
class AssessmentRecord:
    user_id: str
    anxiety: float
    avoidance: float
    style: str
    taken_at: dt.datetime


def _record(row: asyncpg.Record) -> AssessmentRecord:
    return AssessmentRecord(str(row["user_id"]), row["anxiety"], row["avoidance"], row["style"], row["taken_at"])


class AssessmentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, user_id: str) -> AssessmentRecord | None:
        row = await self._pool.fetchrow(
            """SELECT a.user_id, a.anxiety, a.avoidance, a.style, a.taken_at
               FROM attachment_assessments a JOIN users u ON u.id = a.user_id
               WHERE a.user_id = $1 AND u.deleted_at IS NULL""",
            user_id,
        )
        return _record(row) if row is not None else None

    async def save(
        self,
        user_id: str,
        answers: Mapping[str, int],
        anxiety: float,
        avoidance: float,
        style: str,
        now: dt.datetime,
        not_after: dt.datetime,
    ) -> AssessmentRecord | None:
        """Insert, or replace one taken at or before ``not_after``; None when
        the last one is more recent (or the user is gone)."""
        row = await self._pool.fetchrow(
            """INSERT INTO attachment_assessments AS a (user_id, answers, anxiety, avoidance, style, taken_at)
               SELECT id, $2::jsonb, $3, $4, $5, $6 FROM users WHERE id = $1 AND deleted_at IS NULL
               ON CONFLICT (user_id) DO UPDATE SET
                   answers = EXCLUDED.answers, anxiety = EXCLUDED.anxiety, avoidance = EXCLUDED.avoidance,
                   style = EXCLUDED.style, taken_at = EXCLUDED.taken_at
               WHERE a.taken_at <= $7
               RETURNING a.user_id, a.anxiety, a.avoidance, a.style, a.taken_at""",
            user_id,
            orjson.dumps(dict(answers)).decode(),
            anxiety,
            avoidance,
            style,
            now,
            not_after,
        )
        return _record(row) if row is not None else None
