"""Daily suggestion lists in PostgreSQL, and the candidates they are picked from.

Candidates are picked set-wise in SQL, never by scoring all pairs: one query
walks the primary key from a start point that rotates per person and day
(``start``) and stops after ``limit`` rows that pass every filter; a second
takes the newest first-week profiles (``profiles_discover_idx``). Filters,
each an indexed look-up per row (``_filters``): mutual gender, age and distance
preferences both ways, deleted accounts, anyone the viewer liked or passed
(``likes`` key), an active match (``matches_active_pair_key``), a block either
way (``blocks`` key and ``blocks_blocked_idx``), anyone the viewer reported
(``reports_reported_idx``), anyone shown to the viewer in the last 7 days and
anyone already in ``max_exposure`` lists this UTC day
(``suggestions_user_candidate_idx``, ``suggestions_exposure_idx``).

A list is one ``suggestion_days`` row (also for an empty list: the day is
done) and its ``suggestions`` rows; the first writer of a day wins.
Background jobs write under a fencing token (``job_fences``): a write with a
token below the highest one seen comes from a holder whose lock expired and
is refused with :class:`FencedOut`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg

from store.discover import bounding_box
from store.profiles import PROFILE_COLUMNS, Profile, profile_from_row

WEEK: Final = dt.timedelta(days=7)
JOB_NAME: Final = "suggestions"
_DISTANCE: Final = (
    "(2 * 6371.0088 * asin(least(1, sqrt(power(sin(radians(p.lat - {lat}) / 2), 2) + "
    "cos(radians({lat})) * cos(radians(p.lat)) * power(sin(radians(p.lon - {lon}) / 2), 2)))))"
)


class FencedOut(Exception):
    """A newer job holder exists: this one's writes are refused."""


@dataclass(frozen=True, slots=True)
class CandidateQuery:
    viewer: Profile
    viewer_age: int
    born_on_or_before: dt.date | None  # the viewer's age_min
    born_after: dt.date | None  # the viewer's age_max
    now: dt.datetime
    day_start: dt.datetime  # UTC day of the exposure cap
    max_exposure: int
    start: str  # uuid: where the walk over the primary key begins
    limit: int
    newcomer_limit: int


@dataclass(frozen=True, slots=True)
class CandidateRow:
    profile: Profile
    distance_km: float | None
    style: str | None
    days_since_active: float | None
    crossings: int


@dataclass(frozen=True, slots=True)
class Entry:
    candidate_id: str
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredCard:
    profile: Profile
    distance_km: float | None
    score: int
    reasons: tuple[str, ...]


def _candidate_sql(q: CandidateQuery, where_extra: str, order: str, limit: int) -> tuple[str, list[object]]:
    """``where_extra`` may use ``$7``: the walk's start point."""
    v = q.viewer
    args: list[object] = [v.user_id, list(v.interested_in), v.gender, q.viewer_age, q.now, WEEK, q.start]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    loc = v.location
    distance = "NULL::double precision"
    where = [
        "u.deleted_at IS NULL",
        "u.banned_at IS NULL",
        "p.user_id <> $1",
        "p.gender = ANY($2::text[])",
        "$3 = ANY(p.interested_in)",
        "(p.age_min IS NULL OR p.age_min <= $4)",
        "(p.age_max IS NULL OR p.age_max >= $4)",
        "NOT EXISTS (SELECT 1 FROM likes l WHERE l.liker = $1 AND l.likee = p.user_id)",
        "NOT EXISTS (SELECT 1 FROM matches m WHERE m.user_a = least($1::uuid, p.user_id)"
        " AND m.user_b = greatest($1::uuid, p.user_id) AND m.ended_at IS NULL)",
        "NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker, b.blocked) IN (($1, p.user_id), (p.user_id, $1)))",
        "NOT EXISTS (SELECT 1 FROM reports r WHERE r.reported = p.user_id AND r.reporter = $1)",
        "NOT EXISTS (SELECT 1 FROM suggestions s WHERE s.user_id = $1 AND s.candidate_id = p.user_id"
        " AND s.shown_at >= $5::timestamptz - $6::interval)",
    ]
    day_start, cap = arg(q.day_start), arg(q.max_exposure)
    where.append(
        f"(SELECT count(*) FROM suggestions s WHERE s.candidate_id = p.user_id AND s.shown_at >= {day_start}) < {cap}"  # noqa: S608 (placeholders only)
    )
    if q.born_on_or_before is not None:
        where.append(f"p.birthdate <= {arg(q.born_on_or_before)}")
    if q.born_after is not None:
        where.append(f"p.birthdate > {arg(q.born_after)}")
    if loc is not None:
        lat, lon = arg(loc.lat), arg(loc.lon)
        exact = _DISTANCE.format(lat=lat, lon=lon)
        distance = f"CASE WHEN p.lat IS NULL THEN NULL ELSE {exact} END"
        # Distance preferences apply when both locations are known.
        where.append(f"(p.max_distance_km IS NULL OR p.lat IS NULL OR {exact} <= p.max_distance_km)")
        if v.prefs.max_distance_km is not None:
            box = bounding_box(loc, v.prefs.max_distance_km)
            box_sql = f"p.lat BETWEEN {arg(box.lat_min)} AND {arg(box.lat_max)}"
            if box.lon_min is not None:
                box_sql += f" AND p.lon BETWEEN {arg(box.lon_min)} AND {arg(box.lon_max)}"
            where.append(f"(p.lat IS NULL OR ({box_sql} AND {exact} <= {arg(v.prefs.max_distance_km)}))")
    where.append(where_extra)
    sql = f"""SELECT {PROFILE_COLUMNS}, {distance} AS distance_km, a.style,
                 (SELECT extract(epoch FROM $5::timestamptz - max(t.created_at)) / 86400
                  FROM refresh_tokens t WHERE t.user_id = p.user_id) AS days_since_active,
                 COALESCE((SELECT c.count FROM crossed_paths c
                           WHERE c.user_lo = least($1::uuid, p.user_id) AND c.user_hi = greatest($1::uuid, p.user_id)
                             AND c.last_at >= $5::timestamptz - $6::interval AND p.crossed_paths
                             AND {arg(v.prefs.crossed_paths)}), 0) AS crossings
              FROM profiles p JOIN users u ON u.id = p.user_id
              LEFT JOIN attachment_assessments a ON a.user_id = p.user_id
              WHERE {" AND ".join(where)}
              ORDER BY {order} LIMIT {arg(limit)}"""  # noqa: S608 (clauses are constants; values are parameters)
    return sql, args


def _candidate(row: asyncpg.Record) -> CandidateRow:
    days = row["days_since_active"]
    return CandidateRow(
        profile_from_row(row),
        row["distance_km"],
        row["style"],
        None if days is None else float(days),
        int(row["crossings"]),
    )


class SuggestionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def candidates(self, q: CandidateQuery) -> list[CandidateRow]:
        """Up to ``limit`` candidates from the rotating walk, plus up to
        ``newcomer_limit`` of the newest first-week profiles, each once."""
        walk_sql, walk_args = _candidate_sql(q, "p.user_id >= $7::uuid", "p.user_id", q.limit)
        new_sql, new_args = _candidate_sql(
            q,
            "p.created_at >= $5::timestamptz - $6::interval AND $7::uuid IS NOT NULL",
            "p.created_at DESC, p.user_id DESC",
            q.newcomer_limit,
        )
        async with self._pool.acquire() as conn:
            rows = list(await conn.fetch(walk_sql, *walk_args))
            if len(rows) < q.limit:
                wrap_sql, wrap_args = _candidate_sql(q, "p.user_id < $7::uuid", "p.user_id", q.limit - len(rows))
                rows += await conn.fetch(wrap_sql, *wrap_args)
            rows += await conn.fetch(new_sql, *new_args)
        seen: set[str] = set()
        out = []
        for row in rows:
            c = _candidate(row)
            if c.profile.user_id not in seen:
                seen.add(c.profile.user_id)
                out.append(c)
        return out

    async def viewer_extras(self, user_id: str) -> str | None:
        """The person's own attachment style, if they took the assessment."""
        style: str | None = await self._pool.fetchval(
            "SELECT style FROM attachment_assessments WHERE user_id = $1", user_id
        )
        return style

    async def has_list(self, user_id: str, local_date: dt.date) -> bool:
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM suggestion_days WHERE user_id = $1 AND local_date = $2)",
                user_id,
                local_date,
            )
        )

    async def save_list(
        self,
        user_id: str,
        local_date: dt.date,
        now: dt.datetime,
        entries: Sequence[Entry],
        fence: int | None = None,
    ) -> bool:
        """Store the day's list unless one exists already (False then)."""
        async with self._pool.acquire() as conn, conn.transaction():
            if fence is not None:
                accepted = await conn.fetchval(
                    """INSERT INTO job_fences AS f (name, token) VALUES ($1, $2)
                       ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token WHERE f.token <= EXCLUDED.token
                       RETURNING token""",
                    JOB_NAME,
                    fence,
                )
                if accepted is None:
                    raise FencedOut(f"fencing token {fence} is stale")
            made = await conn.fetchval(
                """INSERT INTO suggestion_days (user_id, local_date, made_at)
                   SELECT id, $2, $3 FROM users WHERE id = $1 AND deleted_at IS NULL
                   ON CONFLICT DO NOTHING RETURNING true""",
                user_id,
                local_date,
                now,
            )
            if not made:
                return False
            await conn.executemany(
                """INSERT INTO suggestions (user_id, local_date, position, candidate_id, score, reasons, shown_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                [
                    (user_id, local_date, i, e.candidate_id, e.score, list(e.reasons), now)
                    for i, e in enumerate(entries)
                ],
            )
            return True

    async def cards(self, user_id: str, local_date: dt.date) -> list[StoredCard]:
        """The day's list, best first, without anyone the person has since
        liked, passed, matched, blocked (either way) or reported, or who left."""
        # The viewer's location comes from the same query (v), by primary key.
        distance = _DISTANCE.format(lat="v.lat", lon="v.lon")
        rows = await self._pool.fetch(
            f"""SELECT {PROFILE_COLUMNS}, s.score, s.reasons,
                       CASE WHEN p.lat IS NULL OR v.lat IS NULL THEN NULL ELSE {distance} END AS distance_km
                FROM suggestions s
                JOIN profiles p ON p.user_id = s.candidate_id JOIN users u ON u.id = p.user_id
                LEFT JOIN profiles v ON v.user_id = $1
                WHERE s.user_id = $1 AND s.local_date = $2 AND u.deleted_at IS NULL AND u.banned_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM likes l WHERE l.liker = $1 AND l.likee = p.user_id)
                  AND NOT EXISTS (SELECT 1 FROM matches m WHERE m.user_a = least($1::uuid, p.user_id)
                                  AND m.user_b = greatest($1::uuid, p.user_id) AND m.ended_at IS NULL)
                  AND NOT EXISTS (SELECT 1 FROM blocks b
                                  WHERE (b.blocker, b.blocked) IN (($1, p.user_id), (p.user_id, $1)))
                  AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.reported = p.user_id AND r.reporter = $1)
                ORDER BY s.position""",  # noqa: S608 (constant clauses)
            user_id,
            local_date,
        )
        return [StoredCard(profile_from_row(r), r["distance_km"], r["score"], tuple(r["reasons"])) for r in rows]

    async def due_people(self, now: dt.datetime, after: str | None, limit: int) -> list[str]:
        """People active in the last 7 days with no list for their local date yet."""
        rows = await self._pool.fetch(
            """SELECT p.user_id FROM profiles p JOIN users u ON u.id = p.user_id
               WHERE u.deleted_at IS NULL AND ($2::uuid IS NULL OR p.user_id > $2::uuid)
                 AND EXISTS (SELECT 1 FROM refresh_tokens t
                             WHERE t.user_id = p.user_id AND t.created_at >= $1::timestamptz - $4::interval)
                 AND NOT EXISTS (SELECT 1 FROM suggestion_days d WHERE d.user_id = p.user_id
                                 AND d.local_date = ($1::timestamptz AT TIME ZONE p.time_zone)::date)
               ORDER BY p.user_id LIMIT $3""",
            now,
            after,
            limit,
            WEEK,
        )
        return [str(r["user_id"]) for r in rows]
