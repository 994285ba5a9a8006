"""Discovery: one page of profiles that fit both people's preferences.

The page walks ``profiles_discover_idx`` in keyset order ``(created_at,
user_id)`` and stops after ``limit + 1`` matching rows, so its cost follows
the page size, not the table size. With a distance filter, a bounding box on
the indexed ``lat``/``lon`` narrows the rows before the exact haversine test.

Exclusions are ``NOT EXISTS`` clauses in :func:`page_sql` (``_exclusions``):
people the viewer already liked or passed (``likes``), and blocks in either
direction (``blocks``); both use those tables' primary keys.

Saved preferences are hard filters both ways: the viewer's ``age_min`` /
``age_max`` arrive folded into the birthdate bounds, and the candidate's own
must admit the viewer's age (``viewer_age``). ``max_distance_km`` on either
profile applies when both locations are known (a profile without a location
is not excluded by it, unlike the stricter ``?max_distance_km=`` filter).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from store.profiles import PROFILE_COLUMNS, Location, Profile, profile_from_row

EARTH_RADIUS_KM: Final = 6371.0088
KM_PER_DEGREE_LAT: Final = math.pi * EARTH_RADIUS_KM / 180.0

# Exclusion clauses (each a NOT EXISTS over $1, the viewer's id).
_exclusions: tuple[str, ...] = (
    "NOT EXISTS (SELECT 1 FROM likes l WHERE l.liker = $1 AND l.likee = p.user_id)",
    "NOT EXISTS (SELECT 1 FROM blocks b WHERE (b.blocker, b.blocked) IN (($1, p.user_id), (p.user_id, $1)))",
)


@dataclass(frozen=True, slots=True)
class DiscoverQuery:
    viewer_id: str
    viewer_gender: str
    # Genders the viewer wants to see (their interested_in, narrowed by ?gender=).
    genders: tuple[str, ...]
    viewer_location: Location | None
    limit: int
    # Keyset position: return profiles strictly after it.
    after: tuple[dt.datetime, str] | None = None
    born_on_or_before: dt.date | None = None  # min age
    born_after: dt.date | None = None  # max age
    max_distance_km: float | None = None
    # The viewer's age, checked against each candidate's age_min/age_max.
    viewer_age: int | None = None
    # The viewer's saved max_distance_km (applies when both locations are known).
    preferred_distance_km: float | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    profile: Profile
    distance_km: float | None


@dataclass(frozen=True, slots=True)
class BoundingBox:
    lat_min: float
    lat_max: float
    # None when the box wraps the antimeridian or covers a pole: no longitude prefilter.
    lon_min: float | None
    lon_max: float | None


def bounding_box(centre: Location, km: float) -> BoundingBox:
    """A box that contains every point within ``km`` of ``centre``."""
    dlat = km / KM_PER_DEGREE_LAT
    lat_min, lat_max = centre.lat - dlat, centre.lat + dlat
    if lat_min <= -90 or lat_max >= 90:
        return BoundingBox(max(lat_min, -90.0), min(lat_max, 90.0), None, None)
    # The widest longitude span is at the box's latitude farthest from the equator.
    widest = max(abs(lat_min), abs(lat_max))
    dlon = km / (KM_PER_DEGREE_LAT * math.cos(math.radians(widest)))
    lon_min, lon_max = centre.lon - dlon, centre.lon + dlon
    if dlon >= 180 or lon_min < -180 or lon_max > 180:
        return BoundingBox(lat_min, lat_max, None, None)
    return BoundingBox(lat_min, lat_max, lon_min, lon_max)


def haversine_km(a: Location, b: Location) -> float:
    """Great-circle distance; the same formula as :func:`haversine_sql`."""
    dlat = math.radians(b.lat - a.lat)
    dlon = math.radians(b.lon - a.lon)
    cos_product = math.cos(math.radians(a.lat)) * math.cos(math.radians(b.lat))
    h = math.sin(dlat / 2) ** 2 + cos_product * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def haversine_sql(lat: str, lon: str) -> str:
    return (
        f"(2 * {EARTH_RADIUS_KM} * asin(least(1, sqrt("
        f"power(sin(radians(p.lat - {lat}) / 2), 2) + "
        f"cos(radians({lat})) * cos(radians(p.lat)) * power(sin(radians(p.lon - {lon}) / 2), 2)))))"
    )


def _preferred_distance_sql(centre: Location, km: float, exact: str, arg: Callable[[object], str]) -> str:
    """The viewer's saved distance: profiles without a location pass; the
    bounding box on the indexed ``lat``/``lon`` narrows before the exact test."""
    box = bounding_box(centre, km)
    inside = f"p.lat BETWEEN {arg(box.lat_min)} AND {arg(box.lat_max)}"
    if box.lon_min is not None and box.lon_max is not None:
        inside += f" AND p.lon BETWEEN {arg(box.lon_min)} AND {arg(box.lon_max)}"
    return f"(p.lat IS NULL OR ({inside} AND {exact} <= {arg(km)}))"


def page_sql(q: DiscoverQuery) -> tuple[str, list[object]]:
    """The page query and its parameters (also used by ``bench/discover_seed.py``)."""
    args: list[object] = [q.viewer_id, list(q.genders), q.viewer_gender]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [
        "u.deleted_at IS NULL",
        "u.banned_at IS NULL",
        "p.user_id <> $1",
        "p.gender = ANY($2::text[])",  # the viewer wants them
        "$3 = ANY(p.interested_in)",  # they want the viewer
        *_exclusions,
    ]
    if q.after is not None:
        where.append(f"(p.created_at, p.user_id) > ({arg(q.after[0])}, {arg(q.after[1])}::uuid)")
    if q.born_on_or_before is not None:
        where.append(f"p.birthdate <= {arg(q.born_on_or_before)}")
    if q.born_after is not None:
        where.append(f"p.birthdate > {arg(q.born_after)}")
    if q.viewer_age is not None:
        age = arg(q.viewer_age)
        where.append(f"(p.age_min IS NULL OR p.age_min <= {age})")
        where.append(f"(p.age_max IS NULL OR p.age_max >= {age})")
    distance = "NULL::double precision"
    loc = q.viewer_location
    if loc is not None:
        lat, lon = arg(loc.lat), arg(loc.lon)
        exact = haversine_sql(lat, lon)
        distance = f"CASE WHEN p.lat IS NULL THEN NULL ELSE {exact} END"
        # Their saved distance preference, when both locations are known.
        where.append(f"(p.max_distance_km IS NULL OR p.lat IS NULL OR {exact} <= p.max_distance_km)")
        if q.preferred_distance_km is not None:
            where.append(_preferred_distance_sql(loc, q.preferred_distance_km, exact, arg))
        if q.max_distance_km is not None:
            box = bounding_box(loc, q.max_distance_km)
            where.append(f"p.lat BETWEEN {arg(box.lat_min)} AND {arg(box.lat_max)}")
            if box.lon_min is not None and box.lon_max is not None:
                where.append(f"p.lon BETWEEN {arg(box.lon_min)} AND {arg(box.lon_max)}")
            where.append(f"{haversine_sql(lat, lon)} <= {arg(q.max_distance_km)}")
    sql = f"""SELECT {PROFILE_COLUMNS}, {distance} AS distance_km
              FROM profiles p JOIN users u ON u.id = p.user_id
              WHERE {" AND ".join(where)}
              ORDER BY p.created_at, p.user_id
              LIMIT {arg(q.limit)}"""  # noqa: S608 (clauses are constants; values are parameters)
    return sql, args


class DiscoverStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def page(self, q: DiscoverQuery) -> list[Candidate]:
        """Up to ``q.limit`` candidates after ``q.after``, in keyset order."""
        sql, args = page_sql(q)
        rows = await self._pool.fetch(sql, *args)
        return [Candidate(profile_from_row(r), r["distance_km"]) for r in rows]
