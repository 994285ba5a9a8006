"""Discovery: pages of people who fit both the viewer's preferences and
their own (each wants the other's gender, and each one's saved age and
distance preferences admit the other), newest-last in a stable keyset
order, behind an opaque cursor.

The cursor is base64url of ``"<created_at µs since epoch>:<user_id>"`` of the
last profile on the page; a page never shifts when others sign up because new
profiles sort after every cursor already handed out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.card_scores import CardScorer
from proximity_server.features.errors import BadRequest
from proximity_server.features.profiles import (
    GENDERS,
    MAX_AGE,
    MIN_AGE,
    ProfileService,
    age_on,
    public_view,
    today_utc,
    years_before,
)
from store.discover import DiscoverQuery, DiscoverStore
from store.photos import PhotoRecords

DEFAULT_PAGE_SIZE: Final = 20
MAX_PAGE_SIZE: Final = 50
MAX_DISTANCE_KM: Final = 20_000.0
QUERY_PARAMS: Final = frozenset({"limit", "cursor", "min_age", "max_age", "gender", "max_distance_km"})
BAD_CURSOR_CODE: Final = "bad_cursor"
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode_cursor(created_at: dt.datetime, user_id: str) -> str:
    delta = created_at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return base64.urlsafe_b64encode(f"{micros}:{user_id}".encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    bad = BadRequest("'cursor' is not a cursor this server handed out", code=BAD_CURSOR_CODE)
    if not 0 < len(cursor) <= 128:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros, _, user_id = raw.partition(":")
        created_at = _EPOCH + dt.timedelta(microseconds=int(micros))
        return created_at, str(uuid.UUID(user_id))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise bad from None


def _int_param(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be an integer", code=ErrorCode.INVALID_FIELD) from None
    if not low <= value <= high:
        raise BadRequest(f"'{name}' must be between {low} and {high}", code=ErrorCode.INVALID_FIELD)
    return value


@dataclass(frozen=True, slots=True)
class DiscoverParams:
    limit: int = DEFAULT_PAGE_SIZE
    after: tuple[dt.datetime, str] | None = None
    min_age: int | None = None
    max_age: int | None = None
    gender: str | None = None
    max_distance_km: float | None = None


def parse_params(query: Mapping[str, str]) -> DiscoverParams:
    unknown = sorted(set(query) - QUERY_PARAMS)
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise BadRequest(f"unknown query parameter(s): {shown}", code=ErrorCode.UNKNOWN_FIELD)
    limit = _int_param(query, "limit", 1, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE
    min_age = _int_param(query, "min_age", MIN_AGE, MAX_AGE)
    max_age = _int_param(query, "max_age", MIN_AGE, MAX_AGE)
    if min_age is not None and max_age is not None and min_age > max_age:
        raise BadRequest("'min_age' must not exceed 'max_age'", code=ErrorCode.INVALID_FIELD)
    gender = query.get("gender")
    if gender is not None and gender not in GENDERS:
        raise BadRequest(f"'gender' must be one of {', '.join(GENDERS)}", code=ErrorCode.INVALID_FIELD)
    distance: float | None = None
    if "max_distance_km" in query:
        try:
            distance = float(query["max_distance_km"])
        except ValueError:
            distance = -1.0
        if not 0 < distance <= MAX_DISTANCE_KM:  # also refuses nan
            raise BadRequest(
                f"'max_distance_km' must be a number above 0, at most {MAX_DISTANCE_KM:g}",
                code=ErrorCode.INVALID_FIELD,
            )
    cursor = query.get("cursor")
    after = decode_cursor(cursor) if cursor is not None else None
    return DiscoverParams(limit, after, min_age, max_age, gender, distance)


def _stricter(pick: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return a if b is None else b
    return pick(a, b)


@dataclass(frozen=True, slots=True)
class DiscoverService:
    profiles: ProfileService
    store: DiscoverStore
    photos: PhotoRecords
    scorer: CardScorer

    async def page(self, viewer_id: str, params: DiscoverParams) -> dict[str, Any]:
        viewer = await self.profiles.viewer_profile(viewer_id)
        if params.max_distance_km is not None and viewer.location is None:
            raise BadRequest(
                "set your location in your profile to filter by distance", code=ErrorCode.INVALID_FIELD
            )
        genders = tuple(g for g in viewer.interested_in if params.gender in (None, g))
        empty: dict[str, Any] = {"items": [], "next_cursor": None}
        if not genders:
            return empty
        today = today_utc()
        # The ?min_age=/?max_age= filters narrow the saved preferences, never widen them.
        min_age = _stricter(max, params.min_age, viewer.prefs.age_min)
        max_age = _stricter(min, params.max_age, viewer.prefs.age_max)
        if min_age is not None and max_age is not None and min_age > max_age:
            return empty
        query = DiscoverQuery(
            viewer_id=viewer_id,
            viewer_gender=viewer.gender,
            genders=genders,
            viewer_location=viewer.location,
            limit=params.limit + 1,
            after=params.after,
            born_on_or_before=years_before(today, min_age) if min_age is not None else None,
            born_after=years_before(today, max_age + 1) if max_age is not None else None,
            max_distance_km=params.max_distance_km,
            viewer_age=age_on(viewer.birthdate, today),
            preferred_distance_km=viewer.prefs.max_distance_km,
        )
        candidates = await self.store.page(query)
        more = len(candidates) > params.limit
        candidates = candidates[: params.limit]
        photos = await self.photos.list_for_users([c.profile.user_id for c in candidates])
        scores = await self.scorer.for_cards(viewer, [(c.profile, c.distance_km) for c in candidates])
        items = [
            {
                **public_view(c.profile, photos.get(c.profile.user_id, []), c.distance_km, self.profiles.urls),
                "compatibility": compatibility,
            }
            for c, compatibility in zip(candidates, scores, strict=True)
        ]
        last = candidates[-1].profile if candidates and more else None
        return {"items": items, "next_cursor": encode_cursor(last.created_at, last.user_id) if last else None}
