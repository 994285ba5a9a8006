"""Profiles: validating what the owner writes, and the public view others see.

The public view never carries coordinates, the birthdate or the email: only
the age and, when both people have a location, the distance rounded to whole
kilometres (at least 1).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.compatibility import VALUE_CHOICES
from proximity_server.features.errors import BadRequest, Conflict, NotFound
from proximity_server.features.photo_urls import FULL, THUMB, PhotoUrls
from proximity_server.features.taxonomy import MAX_INTERESTS, InterestError, normalise_interests
from store.discover import haversine_km
from store.photos import Photo, PhotoRecords
from store.profiles import PREFERENCE_NAMES, Location, PersonCard, Preferences, Profile, ProfileFields, ProfileStore

if TYPE_CHECKING:  # card_scores imports this module
    from proximity_server.features.card_scores import CardScorer

GENDERS: Final = ("woman", "man", "nonbinary")
MIN_AGE: Final = 18
MAX_AGE: Final = 120
DISPLAY_NAME_MAX: Final = 50
BIO_MAX: Final = 500
MAX_PROFILE_INTERESTS: Final = MAX_INTERESTS

REQUIRED_FIELDS: Final = ("display_name", "birthdate", "gender", "interested_in")
OPTIONAL_FIELDS: Final = ("bio", "interests", "location", *PREFERENCE_NAMES)
MAX_PREFERRED_DISTANCE_KM: Final = 20_000.0
ALL_FIELDS: Final = REQUIRED_FIELDS + OPTIONAL_FIELDS
PROFILE_REQUIRED_CODE: Final = "profile_required"


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code=ErrorCode.INVALID_FIELD)


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def years_before(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` earlier (28 February for 29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def age_on(birthdate: dt.date, day: dt.date) -> int:
    return day.year - birthdate.year - ((day.month, day.day) < (birthdate.month, birthdate.day))


def _display_name(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid("'display_name' must be a string")
    name = " ".join(value.split())
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise _invalid(f"'display_name' must be 1–{DISPLAY_NAME_MAX} characters")
    return name


def _birthdate(value: object, today: dt.date) -> dt.date:
    if not isinstance(value, str):
        raise _invalid("'birthdate' must be an ISO date string (YYYY-MM-DD)")
    try:
        born = dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid("'birthdate' must be an ISO date (YYYY-MM-DD)") from None
    if len(value) != len("YYYY-MM-DD"):
        raise _invalid("'birthdate' must be an ISO date (YYYY-MM-DD)")
    age = age_on(born, today)
    if age < MIN_AGE:
        raise _invalid(f"you must be at least {MIN_AGE}")
    if age > MAX_AGE:
        raise _invalid("'birthdate' is not plausible")
    return born


def _gender(value: object, name: str = "gender") -> str:
    if not isinstance(value, str) or value not in GENDERS:
        raise _invalid(f"'{name}' must be one of {', '.join(GENDERS)}")
    return value


def _interested_in(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _invalid(f"'interested_in' must be a non-empty list of {', '.join(GENDERS)}")
    chosen = {_gender(item, "interested_in") for item in value}
    return tuple(g for g in GENDERS if g in chosen)


def _bio(value: object) -> str:
    if not isinstance(value, str):
        raise _invalid("'bio' must be a string")
    bio = value.strip()
    if len(bio) > BIO_MAX:
        raise _invalid(f"'bio' may be at most {BIO_MAX} characters")
    return bio


def _interests(value: object) -> tuple[str, ...]:
    if isinstance(value, list) and not value:
        return ()
    try:
        return tuple(normalise_interests(value))
    except InterestError as exc:
        raise _invalid(str(exc)) from None


def _coordinate(value: object, name: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"'location.{name}' must be a number")
    number = float(value)
    if not -limit <= number <= limit:
        raise _invalid(f"'location.{name}' must be between {-limit:g} and {limit:g}")
    return number


def _location(value: object) -> Location | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"lat", "lon"}:
        raise _invalid("'location' must be an object {lat, lon} or null")
    return Location(_coordinate(value["lat"], "lat", 90.0), _coordinate(value["lon"], "lon", 180.0))


def _preferences(data: Mapping[str, Any], base: Preferences) -> Preferences:
    """Values and preferences present in ``data`` merged over ``base``."""
    changes: dict[str, Any] = {}
    for name, choices in VALUE_CHOICES.items():
        if name in data:
            value = data[name]
            if value is not None and value not in choices:
                raise _invalid(f"'{name}' must be one of {', '.join(choices)} or null")
            changes[name] = value
    for name in ("age_min", "age_max"):
        if name in data:
            value = data[name]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not MIN_AGE <= value <= MAX_AGE
            ):
                raise _invalid(f"'{name}' must be an integer {MIN_AGE}–{MAX_AGE} or null")
            changes[name] = value
    if "max_distance_km" in data:
        value = data["max_distance_km"]
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid("'max_distance_km' must be a number or null")
            if not 0 < value <= MAX_PREFERRED_DISTANCE_KM:  # also refuses nan
                raise _invalid(f"'max_distance_km' must be above 0, at most {MAX_PREFERRED_DISTANCE_KM:g}")
            value = float(value)
        changes["max_distance_km"] = value
    if "time_zone" in data:
        changes["time_zone"] = _time_zone(data["time_zone"])
    if "crossed_paths" in data:
        if not isinstance(data["crossed_paths"], bool):
            raise _invalid("'crossed_paths' must be true or false")
        changes["crossed_paths"] = data["crossed_paths"]
    prefs = replace(base, **changes)
    if prefs.age_min is not None and prefs.age_max is not None and prefs.age_min > prefs.age_max:
        raise _invalid("'age_min' must not exceed 'age_max'")
    return prefs


def _time_zone(value: object) -> str:
    if value is None:
        return Preferences().time_zone
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise _invalid("'time_zone' must be an IANA time zone name such as Europe/Berlin")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _invalid("'time_zone' must be an IANA time zone name such as Europe/Berlin") from None
    return value


def parse_fields(data: Mapping[str, Any], base: ProfileFields | None, today: dt.date) -> ProfileFields:
    """A complete profile from a full body (``base`` None) or a partial one
    merged over ``base``. Unknown fields were refused by the reader already."""
    if base is None:
        missing = [f for f in REQUIRED_FIELDS if f not in data]
        if missing:
            raise _invalid(f"missing field(s): {', '.join(missing)}")
        base = ProfileFields("", today, GENDERS[0], (GENDERS[0],), "", (), None)
    fields = base
    if "display_name" in data:
        fields = replace(fields, display_name=_display_name(data["display_name"]))
    if "birthdate" in data:
        fields = replace(fields, birthdate=_birthdate(data["birthdate"], today))
    if "gender" in data:
        fields = replace(fields, gender=_gender(data["gender"]))
    if "interested_in" in data:
        fields = replace(fields, interested_in=_interested_in(data["interested_in"]))
    if "bio" in data:
        fields = replace(fields, bio=_bio(data["bio"]))
    if "interests" in data:
        fields = replace(fields, interests=_interests(data["interests"]))
    if "location" in data:
        fields = replace(fields, location=_location(data["location"]))
    if any(name in data for name in PREFERENCE_NAMES):
        fields = replace(fields, prefs=_preferences(data, fields.prefs))
    return fields


def fields_of(profile: Profile) -> ProfileFields:
    return ProfileFields(
        display_name=profile.display_name,
        birthdate=profile.birthdate,
        gender=profile.gender,
        interested_in=profile.interested_in,
        bio=profile.bio,
        interests=profile.interests,
        location=profile.location,
        prefs=profile.prefs,
    )


def photo_ref(photo_id: str, urls: PhotoUrls) -> dict[str, Any]:
    """A photo and its thumbnail as signed URLs an ``<img>`` can load without a
    bearer header: every photo object in a reply (own list, public profile,
    match and conversation cards) has these."""
    expires = urls.expiry()
    return {
        "photo_id": photo_id,
        "url": urls.url(photo_id, FULL, expires),
        "thumb_url": urls.url(photo_id, THUMB, expires),
    }


def photo_view(photo: Photo, urls: PhotoUrls) -> dict[str, Any]:
    return {**photo_ref(photo.photo_id, urls), "position": photo.position}


def person_card_view(card: PersonCard, urls: PhotoUrls) -> dict[str, Any]:
    """The other person on a match or conversation card: name, age and first
    photo (``age`` is None without a profile, ``photo`` None without a photo)."""
    return {
        "user_id": card.user_id,
        "display_name": card.display_name,
        "age": None if card.birthdate is None else age_on(card.birthdate, today_utc()),
        "photo": None if card.photo_id is None else photo_ref(card.photo_id, urls),
    }


def own_profile_view(profile: Profile, photos: Sequence[Photo], urls: PhotoUrls) -> dict[str, Any]:
    """Everything, for its owner."""
    loc = profile.location
    return {
        "display_name": profile.display_name,
        "birthdate": profile.birthdate.isoformat(),
        "age": age_on(profile.birthdate, today_utc()),
        "gender": profile.gender,
        "interested_in": list(profile.interested_in),
        "bio": profile.bio,
        "interests": list(profile.interests),
        "location": {"lat": loc.lat, "lon": loc.lon} if loc else None,
        "photos": [photo_view(p, urls) for p in photos],
        "updated_at": profile.updated_at.isoformat(),
        **{name: getattr(profile.prefs, name) for name in PREFERENCE_NAMES},
    }


def rounded_km(distance_km: float | None) -> int | None:
    if distance_km is None:
        return None
    return max(1, round(distance_km))


def public_view(
    profile: Profile, photos: Sequence[Photo], distance_km: float | None, urls: PhotoUrls
) -> dict[str, Any]:
    """What another signed-in person sees: no coordinates, birthdate or email."""
    return {
        "user_id": profile.user_id,
        "display_name": profile.display_name,
        "age": age_on(profile.birthdate, today_utc()),
        "gender": profile.gender,
        "bio": profile.bio,
        "interests": list(profile.interests),
        "photos": [photo_view(p, urls) for p in photos],
        "distance_km": rounded_km(distance_km),
    }


def profile_required() -> Conflict:
    """What a feature that needs the viewer's own profile answers without one."""
    return Conflict("create your profile first (PUT /me/profile)", code=PROFILE_REQUIRED_CODE)


def distance_between(a: Location | None, b: Location | None) -> float | None:
    if a is None or b is None:
        return None
    return haversine_km(a, b)


@dataclass(frozen=True, slots=True)
class ProfileService:
    profiles: ProfileStore
    photos: PhotoRecords
    urls: PhotoUrls
    scorer: CardScorer | None = None  # compatibility on public profiles

    async def me(self, user_id: str) -> dict[str, Any]:
        own = await self.profiles.own_account(user_id)
        if own is None:
            raise NotFound("no such account")
        account, profile, photos = own.account, own.profile, own.photos
        return {
            "user_id": account.user_id,
            "email": account.email,
            "created_at": account.created_at.isoformat(),
            "profile": own_profile_view(profile, photos, self.urls) if profile is not None else None,
        }

    async def replace(self, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = parse_fields(data, None, today_utc())
        profile = await self.profiles.put(user_id, fields)
        if profile is None:
            raise NotFound("no such account")
        return own_profile_view(profile, await self.photos.list_for_user(user_id), self.urls)

    async def update(self, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        today = today_utc()

        def build(current: Profile | None) -> ProfileFields:
            return parse_fields(data, fields_of(current) if current is not None else None, today)

        profile = await self.profiles.update(user_id, build)
        if profile is None:
            raise NotFound("no such account")
        return own_profile_view(profile, await self.photos.list_for_user(user_id), self.urls)

    async def viewer_profile(self, user_id: str) -> Profile:
        profile = await self.profiles.get(user_id)
        if profile is None:
            raise profile_required()
        return profile

    async def public(self, viewer_id: str, user_id: str) -> dict[str, Any]:
        """Another person's public profile; 404 while a block stands between
        the two, whoever blocked whom (a block is indistinguishable from an
        unknown user)."""
        profile = await self.profiles.get_visible_to(viewer_id, user_id)
        if profile is None:
            raise NotFound("no such profile")
        viewer = await self.profiles.get(viewer_id) if viewer_id != user_id else profile
        distance = distance_between(viewer.location if viewer else None, profile.location)
        view = public_view(profile, await self.photos.list_for_user(user_id), distance, self.urls)
        # Null for your own profile, or before you have one to compare.
        compatibility = None
        if self.scorer is not None and viewer is not None and viewer_id != user_id:
            [compatibility] = await self.scorer.for_cards(viewer, [(profile, distance)])
        view["compatibility"] = compatibility
        return view
