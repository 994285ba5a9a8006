"""Profiles in PostgreSQL: one row per user, read and written by its owner.

Every function takes the acting user's id; a soft-deleted user (``users.deleted_at``)
has no profile as far as these functions are concerned, and neither has someone
on the other side of a block (``blocks``, either direction) for the public view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from store.photos import Photo, photo_from_row


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Preferences:
    """Values (fixed choices; None = not answered) and matching preferences."""

    family_plans: str | None = None
    smoking: str | None = None
    drinking: str | None = None
    faith_importance: str | None = None
    age_min: int | None = None
    age_max: int | None = None
    max_distance_km: float | None = None
    time_zone: str = "UTC"
    crossed_paths: bool = True


# The value questions (fixed choices), in Preferences' order.
VALUE_NAMES: Final = ("family_plans", "smoking", "drinking", "faith_importance")
PREFERENCE_NAMES: Final = (
    *VALUE_NAMES,
    "age_min",
    "age_max",
    "max_distance_km",
    "time_zone",
    "crossed_paths",
)


@dataclass(frozen=True, slots=True)
class Profile:
    user_id: str
    display_name: str
    birthdate: dt.date
    gender: str
    interested_in: tuple[str, ...]
    bio: str
    interests: tuple[str, ...]
    location: Location | None
    created_at: dt.datetime
    updated_at: dt.datetime
    prefs: Preferences = Preferences()


@dataclass(frozen=True, slots=True)
class ProfileFields:
    """What the owner writes: a complete profile."""

    display_name: str
    birthdate: dt.date
    gender: str
    interested_in: tuple[str, ...]
    bio: str
    interests: tuple[str, ...]
    location: Location | None
    prefs: Preferences = Preferences()


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    email: str
    created_at: dt.datetime


PROFILE_COLUMNS = (
    "p.user_id, p.display_name, p.birthdate, p.gender, p.interested_in, p.bio, p.interests, "
    "p.lat, p.lon, p.created_at, p.updated_at, "
    "p.family_plans, p.smoking, p.drinking, p.faith_importance, p.age_min, p.age_max, p.max_distance_km, "
    "p.time_zone, p.crossed_paths"
)


@dataclass(frozen=True, slots=True)
class OwnAccount:
    """Everything ``GET /me`` shows, read in one query."""

    account: Account
    profile: Profile | None
    photos: list[Photo]  # empty without a profile


def profile_from_row(row: asyncpg.Record) -> Profile:
    lat, lon = row["lat"], row["lon"]
    return Profile(
        user_id=str(row["user_id"]),
        display_name=row["display_name"],
        birthdate=row["birthdate"],
        gender=row["gender"],
        interested_in=tuple(row["interested_in"]),
        bio=row["bio"],
        interests=tuple(row["interests"]),
        location=Location(lat, lon) if lat is not None and lon is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        prefs=Preferences(*(row[name] for name in PREFERENCE_NAMES)),
    )


@dataclass(frozen=True, slots=True)
class PersonCard:
    """The other person as lists show them: name, birthdate (for the age) and
    first photo, each None while they have no profile or no photo."""

    user_id: str
    display_name: str | None
    birthdate: dt.date | None
    photo_id: str | None


# The columns and joins that read a ``PersonCard`` for the user ``o`` in the
# same query as the list it belongs to: the first photo comes from a LATERAL
# subquery on the (user_id, position) key, so a page of N rows is one query,
# not N + 1.
PERSON_CARD_COLUMNS: Final = "o.id AS other_id, p.display_name, p.birthdate, ph.id AS photo_id"
PERSON_CARD_JOINS: Final = """LEFT JOIN profiles p ON p.user_id = o.id
               LEFT JOIN LATERAL (
                   SELECT id FROM photos WHERE photos.user_id = o.id ORDER BY position LIMIT 1
               ) ph ON true"""


def person_card(row: asyncpg.Record) -> PersonCard:
    photo_id = row["photo_id"]
    return PersonCard(
        str(row["other_id"]), row["display_name"], row["birthdate"], None if photo_id is None else str(photo_id)
    )


class ProfileStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def account(self, user_id: str) -> Account | None:
        row = await self._pool.fetchrow(
            "SELECT id, email, created_at FROM users WHERE id = $1 AND deleted_at IS NULL", user_id
        )
        if row is None:
            return None
        return Account(str(row["id"]), row["email"], row["created_at"])

    async def own_account(self, user_id: str) -> OwnAccount | None:
        """The live user's account, profile and photos in one round trip, or None."""
        row = await self._pool.fetchrow(
            f"""SELECT u.id AS account_id, u.email, u.created_at AS account_created_at, {PROFILE_COLUMNS},
                       ARRAY(SELECT ph FROM photos ph WHERE ph.user_id = u.id ORDER BY ph.position) AS photos
                FROM users u LEFT JOIN profiles p ON p.user_id = u.id
                WHERE u.id = $1 AND u.deleted_at IS NULL""",  # noqa: S608 (constant columns)
            user_id,
        )
        if row is None:
            return None
        account = Account(str(row["account_id"]), row["email"], row["account_created_at"])
        if row["user_id"] is None:
            return OwnAccount(account, None, [])
        return OwnAccount(account, profile_from_row(row), [photo_from_row(r) for r in row["photos"]])

    async def get(self, user_id: str) -> Profile | None:
        """The profile of a live (not deleted) user, or None."""
        row = await self._pool.fetchrow(
            f"""SELECT {PROFILE_COLUMNS}
                FROM profiles p JOIN users u ON u.id = p.user_id
                WHERE p.user_id = $1 AND u.deleted_at IS NULL""",  # noqa: S608 (constant columns)
            user_id,
        )
        return profile_from_row(row) if row is not None else None

    async def get_visible_to(self, viewer_id: str, user_id: str) -> Profile | None:
        """The profile of a live user as ``viewer_id`` may see it: None also
        while a block stands between the two, in either direction."""
        row = await self._pool.fetchrow(
            f"""SELECT {PROFILE_COLUMNS}
                FROM profiles p JOIN users u ON u.id = p.user_id
                WHERE p.user_id = $2 AND u.deleted_at IS NULL
                  AND (u.banned_at IS NULL OR p.user_id = $1)
                  AND NOT EXISTS (
                      SELECT 1 FROM blocks b WHERE (b.blocker, b.blocked) IN (($1::uuid, $2::uuid), ($2, $1))
                  )""",  # noqa: S608 (constant columns)
            viewer_id,
            user_id,
        )
        return profile_from_row(row) if row is not None else None

    async def put(self, user_id: str, fields: ProfileFields) -> Profile | None:
        """Create or fully replace the user's profile; None if the user is gone."""
        async with self._pool.acquire() as conn:
            return await _upsert(conn, user_id, fields)

    async def update(self, user_id: str, build: Callable[[Profile | None], ProfileFields]) -> Profile | None:
        """Read-modify-write under a row lock: ``build`` gets the current
        profile (or None) and returns the complete new one. Concurrent partial
        updates never lose each other's fields."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"""SELECT {PROFILE_COLUMNS}
                    FROM profiles p JOIN users u ON u.id = p.user_id
                    WHERE p.user_id = $1 AND u.deleted_at IS NULL
                    FOR UPDATE OF p""",  # noqa: S608 (constant columns)
                user_id,
            )
            fields = build(profile_from_row(row) if row is not None else None)
            return await _upsert(conn, user_id, fields)


async def _upsert(conn: asyncpg.Connection, user_id: str, fields: ProfileFields) -> Profile | None:
    loc = fields.location
    try:
        row = await conn.fetchrow(
            f"""WITH live AS (SELECT id FROM users WHERE id = $1 AND deleted_at IS NULL)
                INSERT INTO profiles AS p (user_id, display_name, birthdate, gender, interested_in,
                                           bio, interests, lat, lon, family_plans, smoking, drinking,
                                           faith_importance, age_min, age_max, max_distance_km, time_zone,
                                           crossed_paths)
                SELECT live.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18
                FROM live
                ON CONFLICT (user_id) DO UPDATE SET
                    display_name = EXCLUDED.display_name, birthdate = EXCLUDED.birthdate,
                    gender = EXCLUDED.gender, interested_in = EXCLUDED.interested_in,
                    bio = EXCLUDED.bio, interests = EXCLUDED.interests,
                    lat = EXCLUDED.lat, lon = EXCLUDED.lon, family_plans = EXCLUDED.family_plans,
                    smoking = EXCLUDED.smoking, drinking = EXCLUDED.drinking,
                    faith_importance = EXCLUDED.faith_importance, age_min = EXCLUDED.age_min,
                    age_max = EXCLUDED.age_max, max_distance_km = EXCLUDED.max_distance_km,
                    time_zone = EXCLUDED.time_zone, crossed_paths = EXCLUDED.crossed_paths,
                    updated_at = clock_timestamp()
                RETURNING {PROFILE_COLUMNS}""",  # noqa: S608 (constant columns)
            user_id,
            fields.display_name,
            fields.birthdate,
            fields.gender,
            list(fields.interested_in),
            fields.bio,
            list(fields.interests),
            loc.lat if loc else None,
            loc.lon if loc else None,
            *(getattr(fields.prefs, name) for name in PREFERENCE_NAMES),
        )
    except asyncpg.ForeignKeyViolationError:
        return None  # the user was removed meanwhile
    return profile_from_row(row) if row is not None else None
