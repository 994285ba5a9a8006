"""Daily suggestion lists in PostgreSQL, and the candidates they are picked from.

Candidates are picked set-wise in SQL, never by scoring all pairs. The first
query (one round trip) reads up to ``limit`` rows in an order an index gives,
from a start point that rotates per person and day, stopping when it has them,
plus the newest first-week profiles (``profiles_discover_idx``):

- without a maximum distance, the primary key from ``start`` (wrapping round);
- with one, the located profiles in its bounding box (``profiles_point_idx``,
  GiST), then the profiles without a location (``profiles_no_location_idx``),
  which that preference does not exclude.

Column tests come first: mutual gender, age and distance preferences both
ways. Then, per row: not deleted or banned (``users_gone_idx``), not anyone the
viewer already dealt with (liked or passed, matched, blocked either way,
reported, shown in the last 7 days: read once per query from the viewer's
own index entries into a hashed subplan), not already in ``max_exposure`` lists this UTC
day (``suggestions_exposure_idx``). Planning settings for these queries are
in ``_INDEX_WALK_PLANS``.

A list is one ``suggestion_days`` row (also for an empty list: the day is
done) and its ``suggestions`` rows, written in one statement; the first writer
of a day wins. Background jobs write under a fencing token (``job_fences``): a
write with a token below the highest one seen comes from a holder whose lock
expired and is refused with :class:`FencedOut`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import asyncpg
import orjson

from store.discover import bounding_box, haversine_sql
from store.photos import Photo, photo_from_row
from store.profiles import PROFILE_COLUMNS, VALUE_NAMES, Profile, profile_from_row

WEEK: Final = dt.timedelta(days=7)
JOB_NAME: Final = "suggestions"
_EXACT: Final = haversine_sql("$12", "$13")
OVERFETCH: Final = 4
# The preferences scoring reads: the value questions, then the wishes (the
# order _candidate unpacks them in).
_SCORED_PREFERENCES: Final = ", ".join(f"p.{name}" for name in (*VALUE_NAMES, "age_min", "age_max", "max_distance_km"))

# Every candidate query takes the same parameters (CandidateQuery.args):
#  $1 viewer  $2 the viewer's wished genders  $3 the viewer's gender  $4 the viewer's age
#  $5 now  $6 one week  $7 the walk's start (uuid)  $8 the UTC day of the exposure cap
#  $9 the cap  $10/$11 birthdate bounds from the viewer's age range (or NULL)
#  $12/$13 the viewer's location (or NULL)  $14 the viewer's max distance (or NULL)
#  $15..$18 its bounding box (lon NULL when it spans every longitude)
#  $19 the viewer's crossed-paths opt-in  $20 how many rows
# The texts are constants, so each is prepared and planned once per connection.
_CHEAP: Final = f"""p.user_id <> $1
    AND p.gender = ANY($2::text[]) AND $3 = ANY(p.interested_in)
    AND (p.age_min IS NULL OR p.age_min <= $4) AND (p.age_max IS NULL OR p.age_max >= $4)
    AND ($10::date IS NULL OR p.birthdate <= $10) AND ($11::date IS NULL OR p.birthdate > $11)
    AND (p.lat IS NULL OR $12::float8 IS NULL OR p.max_distance_km IS NULL OR {_EXACT} <= p.max_distance_km)
    AND (p.lat IS NULL OR $14::float8 IS NULL
         OR (p.lat BETWEEN $15 AND $16 AND ($17::float8 IS NULL OR p.lon BETWEEN $17 AND $18)
             AND {_EXACT} <= $14))"""
# Everyone the viewer acted on: liked or passed, matched, blocked either way
# (as blocker or blocked), reported. (None of these columns is NULL, so
# NOT IN over it means what it says.)
_ACTED_ON: Final = """
        SELECT l.likee FROM likes l WHERE l.liker = $1
        UNION ALL SELECT m.user_b FROM matches m WHERE m.user_a = $1 AND m.ended_at IS NULL
        UNION ALL SELECT m.user_a FROM matches m WHERE m.user_b = $1 AND m.ended_at IS NULL
        UNION ALL SELECT b.blocked FROM blocks b WHERE b.blocker = $1
        UNION ALL SELECT b.blocker FROM blocks b WHERE b.blocked = $1
        UNION ALL SELECT r.reported FROM reports r WHERE r.reporter = $1"""
# Those, and everyone shown to the viewer in the last 7 days: read once per
# query (a hashed SubPlan over the viewer's own index entries), then one hash
# probe per row instead of six index look-ups.
_DEALT_WITH: Final = f"""({_ACTED_ON}
        UNION ALL SELECT s.candidate_id FROM suggestions s
                  WHERE s.user_id = $1 AND s.shown_at >= $5::timestamptz - $6::interval)"""  # noqa: S608 (constant)
# Look-ups per row, after the column tests.
_EXCLUSIONS: Final = f"""p.user_id NOT IN {_DEALT_WITH}
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = p.user_id
                    AND (u.deleted_at IS NOT NULL OR u.banned_at IS NOT NULL))
    AND (SELECT count(*) FROM (SELECT 1 FROM suggestions s WHERE s.candidate_id = p.user_id
                               AND s.shown_at >= $8 LIMIT $9) capped) < $9"""  # noqa: S608 (constant)


def _candidate_sql(where: str, order: str, limit: str = "$20", part: int = 0, prefetch: bool = False) -> str:
    """``part`` tells the rows of a UNION ALL's branches apart. ``prefetch``:
    an order no index gives (every row the column tests pass gets sorted)
    takes the first ``OVERFETCH`` times ``limit`` of them before the per-row
    look-ups, instead of looking up every one."""
    source = "profiles p"
    if prefetch:
        source = f"(SELECT * FROM profiles p WHERE {where} AND {_CHEAP} ORDER BY {order} LIMIT {limit} * {OVERFETCH}) p"  # noqa: S608
    return f"""SELECT {part} AS part, p.user_id, p.birthdate, p.interests, p.created_at, {_SCORED_PREFERENCES},
                 CASE WHEN p.lat IS NULL OR $12::float8 IS NULL THEN NULL ELSE {_EXACT} END AS distance_km,
                 (SELECT a.style FROM attachment_assessments a WHERE a.user_id = p.user_id) AS style,
                 (SELECT extract(epoch FROM $5::timestamptz - max(t.created_at)) / 86400
                  FROM refresh_tokens t WHERE t.user_id = p.user_id)::float8 AS days_since_active,
                 COALESCE((SELECT CASE WHEN c.last_at >= $5::timestamptz - $6::interval THEN c.count END
                           FROM crossed_paths c
                           WHERE c.user_lo = least($1::uuid, p.user_id) AND c.user_hi = greatest($1::uuid, p.user_id)
                             AND p.crossed_paths AND $19), 0)
                   AS crossings
              FROM {source}
              WHERE {where} AND {_CHEAP} AND {_EXCLUSIONS}
              ORDER BY {order} LIMIT {limit}"""  # noqa: S608 (constant clauses; values are parameters)


# The newest first-week profiles (profiles_discover_idx), up to $21: the
# second branch of the first query, so one round trip brings both.
_NEWCOMERS: Final = _candidate_sql(
    "p.created_at >= $5::timestamptz - $6::interval", "p.created_at DESC, p.user_id DESC", "$21", 1
)
# The walk over the primary key from the day's start point, and its wrap-around.
_WALK: Final = _candidate_sql("p.user_id >= $7::uuid", "p.user_id")
_WRAP: Final = _candidate_sql("p.user_id < $7::uuid", "p.user_id")
# A viewer with a maximum distance: the located profiles in its bounding box
# (profiles_point_idx; a box spanning every longitude is a latitude band), in
# the walk's rotating order, then the profiles without a location
# (profiles_no_location_idx, walked from the start point), which that
# preference does not exclude.
_IN_BOX: Final = (
    "p.lat IS NOT NULL AND point(p.lon, p.lat) <@ box(point(coalesce($17::float8, -180), $15::float8),"
    " point(coalesce($18::float8, 180), $16::float8))"
)
_NEAR: Final = _candidate_sql(_IN_BOX, "p.user_id < $7::uuid, p.user_id", prefetch=True)
_UNPLACED: Final = _candidate_sql("p.lat IS NULL AND p.user_id >= $7::uuid", "p.user_id", prefetch=True)
_WALK_AND_NEWCOMERS: Final = f"({_WALK}) UNION ALL ({_NEWCOMERS})"
_NEAR_AND_NEWCOMERS: Final = f"({_NEAR}) UNION ALL ({_NEWCOMERS})"

# Candidate queries are index walks with a LIMIT and per-row key look-ups by
# design. Planning one costs more than running it and every custom plan comes
# out alike, so each is planned once per connection; and a plan made while a
# table was small (suggestions fills up all day) must not scan it later, so
# sequential and bitmap scans (which lose the index order the walks stop
# early on) and hash or merge joins are ruled out for them. The pool's
# release restores the defaults for every other query (db.Connection).
_INDEX_WALK_PLANS: Final = (
    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off;"
    " SET enable_hashjoin = off; SET enable_mergejoin = off; SET enable_bitmapscan = off"
)


_ASYNC_COMMIT: Final = "; SET synchronous_commit = off"


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

    def args(self, limit: int, newcomer_limit: int | None = None) -> list[object]:
        v = self.viewer
        loc = v.location
        wish = v.prefs.max_distance_km if loc is not None else None
        box = bounding_box(loc, wish) if loc is not None and wish is not None else None
        return [
            v.user_id,
            list(v.interested_in),
            v.gender,
            self.viewer_age,
            self.now,
            WEEK,
            self.start,
            self.day_start,
            self.max_exposure,
            self.born_on_or_before,
            self.born_after,
            loc.lat if loc is not None else None,
            loc.lon if loc is not None else None,
            wish,
            box.lat_min if box is not None else None,
            box.lat_max if box is not None else None,
            box.lon_min if box is not None else None,
            box.lon_max if box is not None else None,
            v.prefs.crossed_paths,
            limit,
            *(() if newcomer_limit is None else (newcomer_limit,)),
        ]


class CandidateRow(NamedTuple):
    """What ranking needs of a candidate (the list shows whole cards later).
    A tuple: a job builds hundreds of thousands of these."""

    user_id: str
    birthdate: dt.date
    interests: tuple[str, ...]
    created_at: dt.datetime
    values: dict[str, str]  # the value questions answered
    age_min: int | None
    age_max: int | None
    max_distance_km: float | None
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
    photos: list[Photo]
    distance_km: float | None
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Around:
    """A person's lists around a UTC date, read before their own local date
    is known (it is one of three): their time zone, the dates that have a
    list (possibly empty), and each date's cards, best first."""

    time_zone: str
    days: frozenset[dt.date]
    cards: dict[dt.date, list[StoredCard]]


def _candidate(row: asyncpg.Record) -> CandidateRow:
    _, user_id, birthdate, interests, created_at, *values, age_min, age_max, max_km, km, style, days, crossings = row
    return CandidateRow(
        str(user_id),
        birthdate,
        tuple(interests),
        created_at,
        {name: value for name, value in zip(VALUE_NAMES, values, strict=True) if value is not None},
        age_min,
        age_max,
        max_km,
        km,
        style,
        None if days is None else float(days),
        crossings,
    )


# The fence (when given), the day's marker and its cards, as one statement:
# each step runs only if the one before it wrote (the CTEs see each other's
# RETURNING rows). $4 is [[candidate_id, score, [reason, ...]], ...], best first.
_SAVE_LIST: Final = """
WITH fence AS (
    INSERT INTO job_fences AS f (name, token) SELECT $6, $5 WHERE $5::bigint IS NOT NULL
    ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token WHERE f.token <= EXCLUDED.token
    RETURNING token
), day AS (
    INSERT INTO suggestion_days (user_id, local_date, made_at)
    SELECT id, $2, $3 FROM users
    WHERE id = $1 AND deleted_at IS NULL AND ($5::bigint IS NULL OR EXISTS (SELECT 1 FROM fence))
    ON CONFLICT DO NOTHING RETURNING user_id
), cards AS (
    INSERT INTO suggestions (user_id, local_date, position, candidate_id, score, reasons, shown_at)
    SELECT $1, $2, e.n - 1, (e.card->>0)::uuid, (e.card->>1)::smallint,
           ARRAY(SELECT jsonb_array_elements_text(e.card->2)), $3
    FROM jsonb_array_elements($4::jsonb) WITH ORDINALITY AS e(card, n)
    WHERE EXISTS (SELECT 1 FROM day)
)
SELECT $5::bigint IS NULL OR EXISTS (SELECT 1 FROM fence) AS fenced_ok, EXISTS (SELECT 1 FROM day) AS made
"""


_AROUND: Final = f"""
SELECT v.time_zone AS viewer_time_zone,
       ARRAY(SELECT d.local_date FROM suggestion_days d
             WHERE d.user_id = v.user_id AND d.local_date BETWEEN $2::date - 1 AND $2::date + 1) AS days,
       c.*
FROM profiles v
LEFT JOIN LATERAL (
    SELECT s.local_date, s.score, s.reasons, {PROFILE_COLUMNS},
           CASE WHEN p.lat IS NULL OR v.lat IS NULL THEN NULL
                ELSE {haversine_sql("v.lat", "v.lon")} END AS distance_km,
           ARRAY(SELECT ph FROM photos ph WHERE ph.user_id = p.user_id ORDER BY ph.position) AS photos
    FROM suggestions s
    JOIN profiles p ON p.user_id = s.candidate_id JOIN users u ON u.id = p.user_id
    WHERE s.user_id = v.user_id AND s.local_date BETWEEN $2::date - 1 AND $2::date + 1
      AND u.deleted_at IS NULL AND u.banned_at IS NULL AND p.user_id NOT IN ({_ACTED_ON})
    ORDER BY s.local_date, s.position
) c ON true
WHERE v.user_id = $1
"""  # noqa: S608 (constant clauses)


class ListWriter:
    """Candidate reads and list writes on one connection (SuggestionStore.lists)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def candidates(self, q: CandidateQuery) -> list[CandidateRow]:
        """Up to ``limit`` candidates, plus up to ``newcomer_limit`` of the
        newest first-week profiles, each once."""
        near = q.viewer.location is not None and q.viewer.prefs.max_distance_km is not None
        first, *rest = (_NEAR_AND_NEWCOMERS, _UNPLACED) if near else (_WALK_AND_NEWCOMERS, _WRAP)
        rows = list(await self._conn.fetch(first, *q.args(q.limit, q.newcomer_limit)))
        walked = sum(1 for row in rows if row["part"] == 0)
        for more in rest:
            if walked >= q.limit:
                break
            found = await self._conn.fetch(more, *q.args(q.limit - walked))
            rows += found
            walked += len(found)
        seen: set[str] = set()
        out = []
        for row in rows:
            c = _candidate(row)
            if c.user_id not in seen:
                seen.add(c.user_id)
                out.append(c)
        return out

    async def save_list(
        self,
        user_id: str,
        local_date: dt.date,
        now: dt.datetime,
        entries: Sequence[Entry],
        fence: int | None = None,
    ) -> bool:
        """Store the day's list unless one exists already (False then), in one
        statement; with a ``fence``, only while it is the newest one seen."""
        cards = orjson.dumps([[e.candidate_id, e.score, list(e.reasons)] for e in entries]).decode()
        row = await self._conn.fetchrow(_SAVE_LIST, user_id, local_date, now, cards, fence, JOB_NAME)
        if not row["fenced_ok"]:
            raise FencedOut(f"fencing token {fence} is stale")
        return bool(row["made"])


class SuggestionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def lists(self, *, background: bool = False) -> AsyncIterator[ListWriter]:
        """One connection set up for making lists, for as many as the caller
        makes: a job worker keeps it for a whole batch. ``background``: the
        job's writes (derived data: a list lost in a crash is made again on
        the person's first request) do not wait for their commit's flush."""
        async with self._pool.acquire() as conn:
            await conn.set_session(_INDEX_WALK_PLANS + (_ASYNC_COMMIT if background else ""))
            yield ListWriter(conn)

    async def viewer_extras(self, user_id: str) -> str | None:
        """The person's own attachment style, if they took the assessment."""
        style: str | None = await self._pool.fetchval(
            "SELECT style FROM attachment_assessments WHERE user_id = $1", user_id
        )
        return style


    async def around(self, user_id: str, utc_date: dt.date) -> Around | None:
        """The person's lists dated the day before, on or after ``utc_date``
        (every time zone's local date is one of these), in one query; None
        without a profile. Cards leave out anyone the person has since liked,
        passed, matched, blocked (either way) or reported, or who left."""
        rows = await self._pool.fetch(_AROUND, user_id, utc_date)
        if not rows:
            return None
        cards: dict[dt.date, list[StoredCard]] = {}
        for r in rows:
            if r["local_date"] is not None:
                card = StoredCard(
                    profile_from_row(r),
                    [photo_from_row(ph) for ph in r["photos"]],
                    r["distance_km"],
                    r["score"],
                    tuple(r["reasons"]),
                )
                cards.setdefault(r["local_date"], []).append(card)
        first = rows[0]
        return Around(first["viewer_time_zone"], frozenset(first["days"]), cards)

    async def due_people(self, now: dt.datetime, after: str | None, limit: int) -> list[tuple[Profile, str | None]]:
        """People active in the last 7 days with no list for their local date
        yet, in key order after ``after``: each profile with its attachment style."""
        rows = await self._pool.fetch(
            f"""SELECT {PROFILE_COLUMNS}, a.style
                FROM profiles p JOIN users u ON u.id = p.user_id
                LEFT JOIN attachment_assessments a ON a.user_id = p.user_id
                WHERE u.deleted_at IS NULL AND u.banned_at IS NULL AND ($2::uuid IS NULL OR p.user_id > $2::uuid)
                  AND EXISTS (SELECT 1 FROM refresh_tokens t
                              WHERE t.user_id = p.user_id AND t.created_at >= $1::timestamptz - $4::interval)
                  AND NOT EXISTS (SELECT 1 FROM suggestion_days d WHERE d.user_id = p.user_id
                                  AND d.local_date = ($1::timestamptz AT TIME ZONE p.time_zone)::date)
                ORDER BY p.user_id LIMIT $3""",  # noqa: S608 (constant columns)
            now,
            after,
            limit,
            WEEK,
        )
        return [(profile_from_row(r), r["style"]) for r in rows]
