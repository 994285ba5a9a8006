"""Compatibility between two people: a 0–100 score, its breakdown, and short
reasons a person may read. Pure functions: no I/O, no clock.

Factors and default weights (:data:`WEIGHTS`)::

    attachment    40   fit of the two attachment styles (ATTACHMENT_FIT)
    interests     25   sqrt(0.6 · Jaccard(interests) + 0.4 · Jaccard(categories))
    values        20   agreement on the value questions both answered;
                       family_plans weighs 3, the others 1; opposite
                       family plans are a deal-breaker: the factor is 0
    demographics  15   mean of age fit, distance and activity (below)

A factor either person has not filled (no assessment, no interests, no value
question both answered) is left out and the others are rescaled to 100.

Direction: age fit, distance and activity are seen from one side (does B's age
fit A's range? is B within A's distance?), so A→B and B→A may differ. The
score is the geometric mean of the two, so it is symmetric and a pair only
scores high when it works both ways.

Little data: the rescaled score is pulled toward 50 by the share of weight
that was available: ``50 + (raw − 50) · (0.4 + 0.6 · coverage)``.

Crossed paths: each crossing in the last 7 days adds :data:`CROSSED_BOOST_PER`
points, at most :data:`CROSSED_BOOST_MAX`, after shrinking; the result is
clamped to 0–100.

Reasons never name the other person's attachment style, only its effect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

SECURE: Final = "secure"
ANXIOUS: Final = "anxious"
AVOIDANT: Final = "avoidant"
FEARFUL: Final = "fearful_avoidant"
STYLES: Final = (SECURE, ANXIOUS, AVOIDANT, FEARFUL)

WEIGHTS: Final[Mapping[str, float]] = {"attachment": 40.0, "interests": 25.0, "values": 20.0, "demographics": 15.0}
CROSSED_BOOST_PER: Final = 4
CROSSED_BOOST_MAX: Final = 10
NEUTRAL: Final = 50.0
MIN_SHRINK: Final = 0.4

# Symmetric fit of two styles, 0..1: secure pairs best, anxious–avoidant lowest.
_FIT: Final[dict[frozenset[str], float]] = {
    frozenset({SECURE}): 1.0,
    frozenset({SECURE, ANXIOUS}): 0.8,
    frozenset({SECURE, AVOIDANT}): 0.75,
    frozenset({SECURE, FEARFUL}): 0.65,
    frozenset({ANXIOUS}): 0.5,
    frozenset({AVOIDANT}): 0.45,
    frozenset({FEARFUL}): 0.35,
    frozenset({ANXIOUS, FEARFUL}): 0.35,
    frozenset({AVOIDANT, FEARFUL}): 0.3,
    frozenset({ANXIOUS, AVOIDANT}): 0.2,
}

# Value questions: ordered choices (neighbours agree partly), and weights.
VALUE_CHOICES: Final[Mapping[str, tuple[str, ...]]] = {
    "family_plans": ("wants_children", "open_to_children", "does_not_want_children"),
    "smoking": ("never", "sometimes", "regularly"),
    "drinking": ("never", "socially", "often"),
    "faith_importance": ("not_important", "somewhat_important", "very_important"),
}
VALUE_WEIGHTS: Final[Mapping[str, float]] = {
    "family_plans": 3.0,
    "smoking": 1.0,
    "drinking": 1.0,
    "faith_importance": 1.0,
}
DEAL_BREAKER: Final = "family_plans"
_CHOICE_RANK: Final = {q: {c: i for i, c in enumerate(choices)} for q, choices in VALUE_CHOICES.items()}

INTEREST_SHARE: Final = 0.6
CATEGORY_SHARE: Final = 0.4
AGE_CLOSENESS_YEARS: Final = 15.0  # without a range: fit falls to 0 at this age gap
AGE_OUTSIDE_DECAY: Final = 0.7  # per year outside the preferred range
DEFAULT_DISTANCE_HALF_KM: Final = 25.0  # distance where the fit halves, without a preference
ACTIVITY_HALF_DAYS: Final = 7.0
GOOD_FIT: Final = 0.7
FAIR_FIT: Final = 0.45
REASON_INTERESTS_SHOWN: Final = 3


def attachment_fit(a: str, b: str) -> float:
    return _FIT[frozenset({a, b})]


@dataclass(slots=True)
class Person:
    """What scoring needs to know about one person (all optional but ``age``).

    Treated as immutable; not ``frozen`` only because a frozen dataclass is
    several times slower to build, and ranking builds one per candidate."""

    age: int
    interests: tuple[str, ...] = ()
    categories: frozenset[str] = frozenset()
    style: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    age_min: int | None = None
    age_max: int | None = None
    max_distance_km: float | None = None
    days_since_active: float | None = None
    interest_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.interest_set = frozenset(self.interests)


@dataclass(frozen=True, slots=True)
class Compatibility:
    score: int
    breakdown: dict[str, int | None]
    reasons: list[str]

    def view(self) -> dict[str, object]:
        return {"score": self.score, "reasons": list(self.reasons)}


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def interests_factor(a: Person, b: Person) -> float | None:
    if not a.interests or not b.interests:
        return None
    ji = jaccard(a.interest_set, b.interest_set)
    jc = jaccard(a.categories, b.categories) if a.categories | b.categories else ji
    return math.sqrt(INTEREST_SHARE * ji + CATEGORY_SHARE * jc)


def _agreement(question: str, x: str, y: str) -> float:
    rank = _CHOICE_RANK[question]
    return 1.0 - abs(rank[x] - rank[y]) / (len(rank) - 1)


def is_deal_breaker(a: Person, b: Person) -> bool:
    x, y = a.values.get(DEAL_BREAKER), b.values.get(DEAL_BREAKER)
    return x is not None and y is not None and _agreement(DEAL_BREAKER, x, y) == 0.0


def values_factor(a: Person, b: Person) -> float | None:
    both = [q for q in VALUE_CHOICES if q in a.values and q in b.values]
    if not both:
        return None
    if is_deal_breaker(a, b):
        return 0.0
    total = sum(VALUE_WEIGHTS[q] for q in both)
    return sum(VALUE_WEIGHTS[q] * _agreement(q, a.values[q], b.values[q]) for q in both) / total


def age_fit(a: Person, b: Person) -> float:
    """Does B's age fit A's preferred range (or, without one, A's own age)?"""
    if a.age_min is None and a.age_max is None:
        return max(0.0, 1.0 - abs(a.age - b.age) / AGE_CLOSENESS_YEARS)
    low = a.age_min if a.age_min is not None else 0
    high = a.age_max if a.age_max is not None else 1000
    outside = max(low - b.age, b.age - high, 0)
    return float(AGE_OUTSIDE_DECAY**outside)


def distance_fit(a: Person, distance_km: float) -> float:
    """Halves every half-distance: half of A's max distance, or 25 km."""
    half = a.max_distance_km / 2 if a.max_distance_km else DEFAULT_DISTANCE_HALF_KM
    return float(0.5 ** (distance_km / half))


def demographics_factor(a: Person, b: Person, distance_km: float | None) -> float:
    parts = [age_fit(a, b)]
    if distance_km is not None:
        parts.append(distance_fit(a, distance_km))
    if b.days_since_active is not None:
        parts.append(float(0.5 ** (max(0.0, b.days_since_active - 1) / ACTIVITY_HALF_DAYS)))
    return sum(parts) / len(parts)


def _factors(a: Person, b: Person, distance_km: float | None) -> dict[str, float | None]:
    """Each factor from A's side (None: not known for both)."""
    return {
        "attachment": attachment_fit(a.style, b.style) if a.style and b.style else None,
        "interests": interests_factor(a, b),
        "values": values_factor(a, b),
        "demographics": demographics_factor(a, b, distance_km),
    }


_TOTAL_WEIGHT: Final = sum(WEIGHTS.values())
_ATTACHMENT_W: Final = WEIGHTS["attachment"]
_INTERESTS_W: Final = WEIGHTS["interests"]
_VALUES_W: Final = WEIGHTS["values"]
_DEMOGRAPHICS_W: Final = WEIGHTS["demographics"]


def crossed_boost(crossings: int) -> int:
    return min(CROSSED_BOOST_MAX, CROSSED_BOOST_PER * max(0, crossings))


def points(a: Person, b: Person, *, distance_km: float | None = None, crossings: int = 0) -> int:
    """The symmetric score (``score`` without its reasons and breakdown):
    ranking many candidates needs those only for the few it keeps.

    Attachment fit, interests and values read the same from either side, so
    they are computed once; only demographics (age wishes, distance decay,
    activity) differ between A→B and B→A."""
    weight = _DEMOGRAPHICS_W
    shared = 0.0
    if a.style and b.style:
        weight += _ATTACHMENT_W
        shared += _ATTACHMENT_W * attachment_fit(a.style, b.style)
    if (interests := interests_factor(a, b)) is not None:
        weight += _INTERESTS_W
        shared += _INTERESTS_W * interests
    if (values := values_factor(a, b)) is not None:
        weight += _VALUES_W
        shared += _VALUES_W * values
    raw_ab = (shared + _DEMOGRAPHICS_W * demographics_factor(a, b, distance_km)) / weight
    raw_ba = (shared + _DEMOGRAPHICS_W * demographics_factor(b, a, distance_km)) / weight
    raw = math.sqrt(raw_ab * raw_ba) * 100
    coverage = weight / _TOTAL_WEIGHT
    shrunk = NEUTRAL + (raw - NEUTRAL) * (MIN_SHRINK + (1 - MIN_SHRINK) * coverage)
    return max(0, min(100, round(shrunk + crossed_boost(crossings))))


def score(a: Person, b: Person, *, distance_km: float | None = None, crossings: int = 0) -> Compatibility:
    """The symmetric score of A and B, with its breakdown and reasons addressed to A."""
    f_ab, f_ba = _factors(a, b, distance_km), _factors(b, a, distance_km)
    breakdown: dict[str, int | None] = {}
    for name in WEIGHTS:
        x, y = f_ab[name], f_ba[name]
        breakdown[name] = None if x is None or y is None else round(math.sqrt(x * y) * 100)
    breakdown["crossed_paths_boost"] = crossed_boost(crossings)
    reasons_for_a = reasons(a, b, distance_km=distance_km, crossings=crossings)
    return Compatibility(points(a, b, distance_km=distance_km, crossings=crossings), breakdown, reasons_for_a)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def reasons(a: Person, b: Person, *, distance_km: float | None, crossings: int) -> list[str]:
    """Short lines for A about B. B's attachment style is never named."""
    lines: list[str] = []
    shared = sorted(a.interest_set & b.interest_set)
    if shared:
        noun = "interest" if len(shared) == 1 else "interests"
        lines.append(f"{len(shared)} shared {noun}: {', '.join(shared[:REASON_INTERESTS_SHOWN])}")
    else:
        categories = sorted(a.categories & b.categories)
        if categories:
            lines.append(f"You both like {', '.join(categories[:REASON_INTERESTS_SHOWN])}")
    if crossings > 0:
        lines.append(f"You crossed paths {_times(crossings)} this week")
    if a.style and b.style:
        fit = attachment_fit(a.style, b.style)
        if fit >= GOOD_FIT:
            lines.append("Your ways of relating fit well")
        elif fit >= FAIR_FIT:
            lines.append("Your ways of relating can complement each other")
        else:
            lines.append("Your ways of relating may take some patience")
    if is_deal_breaker(a, b):
        lines.append("You differ on wanting children")
    elif (v := values_factor(a, b)) is not None and v >= GOOD_FIT:
        lines.append("You see eye to eye on values")
    if distance_km is not None:
        lines.append(f"{max(1, round(distance_km))} km away")
    return lines
