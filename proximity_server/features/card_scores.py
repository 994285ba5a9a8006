"""Compatibility on person cards (discovery pages, public profiles):
``{"score", "reasons"}`` for each card, seen from the viewer, with every
signal the score needs read in one query per page (store/compatibility.py).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proximity_server.features.compatibility import Person, score
from proximity_server.features.profiles import age_on
from proximity_server.features.taxonomy import Taxonomy
from store.compatibility import CompatibilityStore, Signals
from store.profiles import VALUE_NAMES, Profile

_NO_SIGNALS = Signals(None, None, 0)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def person(profile: Profile, taxonomy: Taxonomy, on: dt.date, style: str | None, days: float | None) -> Person:
    """What scoring knows of ``profile`` on day ``on``."""
    prefs = profile.prefs
    values = {name: value for name in VALUE_NAMES if (value := getattr(prefs, name)) is not None}
    return person_of(
        profile.birthdate, profile.interests, values, prefs.age_min, prefs.age_max, prefs.max_distance_km,
        taxonomy, on, style, days,
    )  # fmt: skip


def person_of(
    birthdate: dt.date,
    interests: tuple[str, ...],
    values: dict[str, str],
    age_min: int | None,
    age_max: int | None,
    max_distance_km: float | None,
    taxonomy: Taxonomy,
    on: dt.date,
    style: str | None,
    days: float | None,
) -> Person:
    """What scoring knows of someone, from the fields it uses (no whole profile)."""
    return Person(
        age=age_on(birthdate, on),
        interests=interests,
        categories=_categories(taxonomy, interests),
        style=style,
        values=values,
        age_min=age_min,
        age_max=age_max,
        max_distance_km=max_distance_km,
        days_since_active=days,
    )


def _categories(taxonomy: Taxonomy, interests: tuple[str, ...]) -> frozenset[str]:
    """Categories of an interest list, each interest looked up once per process
    (lists rarely repeat, single interests do: the taxonomy normalises its key
    on every look-up, which was a sixth of a suggestion job's time)."""
    return frozenset(c for interest in interests if (c := _category(taxonomy, interest)) is not None)


@functools.lru_cache(maxsize=65_536)
def _category(taxonomy: Taxonomy, interest: str) -> str | None:
    found = taxonomy.categories_for((interest,))
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class CardScorer:
    store: CompatibilityStore
    taxonomy: Taxonomy
    clock: Callable[[], dt.datetime] = utc_now

    async def for_cards(self, viewer: Profile, others: Sequence[tuple[Profile, float | None]]) -> list[dict[str, Any]]:
        """``{"score", "reasons"}`` for each ``(profile, distance_km)``, in order."""
        if not others:
            return []
        now = self.clock()
        today = now.date()
        signals = await self.store.signals(
            viewer.user_id, viewer.prefs.crossed_paths, [p.user_id for p, _ in others], now
        )
        me = person(viewer, self.taxonomy, today, signals.get(viewer.user_id, _NO_SIGNALS).style, 0.0)
        views = []
        for other, distance_km in others:
            s = signals.get(other.user_id, _NO_SIGNALS)
            them = person(other, self.taxonomy, today, s.style, s.days_since_active)
            views.append(score(me, them, distance_km=distance_km, crossings=s.crossings).view())
        return views
