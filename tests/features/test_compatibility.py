"""Compatibility scoring and assessment scoring: pure functions."""

from __future__ import annotations

import itertools
import math

import pytest

from proximity_server.features.assessment import ITEM_IDS, REVERSED, parse_answers, score_answers
from proximity_server.features.compatibility import (
    ANXIOUS,
    AVOIDANT,
    FEARFUL,
    MIN_SHRINK,
    NEUTRAL,
    SECURE,
    STYLES,
    WEIGHTS,
    Person,
    attachment_fit,
    crossed_boost,
    demographics_factor,
    distance_fit,
    interests_factor,
    points,
    score,
    values_factor,
)
from proximity_server.features.errors import BadRequest


def answers_for(anxiety: int, avoidance: int) -> dict[str, int]:
    """Answers whose scored means are exactly ``anxiety`` and ``avoidance``."""
    out = {}
    for item in ITEM_IDS:
        want = anxiety if item.startswith("anx_") else avoidance
        out[item] = 8 - want if item in REVERSED else want
    return out


@pytest.mark.parametrize(
    ("anxiety", "avoidance", "style"),
    [(2, 2, SECURE), (6, 2, ANXIOUS), (2, 6, AVOIDANT), (6, 6, FEARFUL), (4, 3, ANXIOUS), (3, 4, AVOIDANT)],
)
def test_known_answers_give_documented_styles(anxiety: int, avoidance: int, style: str) -> None:
    scores = score_answers(answers_for(anxiety, avoidance))
    assert (scores.anxiety, scores.avoidance, scores.style) == (anxiety, avoidance, style)


def test_reverse_scored_items_count_reversed() -> None:
    answers = dict.fromkeys(ITEM_IDS, 7)  # "strongly agree" with everything
    scores = score_answers(answers)
    # 9 anxiety items, 2 reversed: (7*7 + 1*2) / 9
    assert scores.anxiety == round((7 * 7 + 2) / 9, 2)
    assert scores.avoidance == round((7 * 6 + 3) / 9, 2)


@pytest.mark.parametrize(
    "answers",
    [
        {i: 4 for i in ITEM_IDS[:-1]},
        {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[0]: 8},
        {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[0]: 0},
        {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[0]: True},
        {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[0]: 4.5},
        {**dict.fromkeys(ITEM_IDS, 4), "extra": 4},
        [4] * 18,
    ],
)
def test_incomplete_or_out_of_range_answers_are_refused(answers: object) -> None:
    with pytest.raises(BadRequest):
        parse_answers(answers)


def test_matrix_secure_best_anxious_avoidant_lowest() -> None:
    fits = {frozenset(pair): attachment_fit(*pair) for pair in itertools.combinations_with_replacement(STYLES, 2)}
    assert max(fits.values()) == attachment_fit(SECURE, SECURE)
    assert min(fits.values()) == attachment_fit(ANXIOUS, AVOIDANT)


PEOPLE = [
    Person(age=30),
    Person(age=25, interests=("jazz", "hiking", "chess"), categories=frozenset({"music", "outdoors"}), style=SECURE),
    Person(
        age=41,
        interests=("jazz",),
        categories=frozenset({"music"}),
        style=AVOIDANT,
        age_min=35,
        age_max=45,
        values={"family_plans": "wants_children", "smoking": "never"},
    ),
    Person(
        age=33,
        interests=("chess", "jazz", "hiking", "rowing"),
        style=ANXIOUS,
        max_distance_km=10,
        values={"family_plans": "does_not_want_children", "smoking": "never"},
        days_since_active=20,
    ),
]


@pytest.mark.parametrize(("a", "b"), list(itertools.product(PEOPLE, PEOPLE)))
@pytest.mark.parametrize("distance", [None, 0.0, 12.0, 900.0])
@pytest.mark.parametrize("crossings", [0, 2])
def test_scores_symmetric_and_bounded(a: Person, b: Person, distance: float | None, crossings: int) -> None:
    ab = score(a, b, distance_km=distance, crossings=crossings)
    ba = score(b, a, distance_km=distance, crossings=crossings)
    assert ab.score == ba.score
    assert 0 <= ab.score <= 100


def reference_score(a: Person, b: Person, distance: float | None, crossings: int) -> int:
    """The documented formula, side by side: each side's weighted mean of
    the factors both people have, their geometric mean, shrunk towards 50 by
    the weight missing, plus the crossed-paths boost."""

    def side(x: Person, y: Person) -> tuple[float, float]:
        factors = {
            "attachment": attachment_fit(x.style, y.style) if x.style and y.style else None,
            "interests": interests_factor(x, y),
            "values": values_factor(x, y),
            "demographics": demographics_factor(x, y, distance),
        }
        present = {k: v for k, v in factors.items() if v is not None}
        weight = sum(WEIGHTS[k] for k in present)
        return sum(WEIGHTS[k] * v for k, v in present.items()) / weight, weight / sum(WEIGHTS.values())

    (ab, coverage), (ba, _) = side(a, b), side(b, a)
    raw = math.sqrt(ab * ba) * 100
    shrunk = NEUTRAL + (raw - NEUTRAL) * (MIN_SHRINK + (1 - MIN_SHRINK) * coverage)
    return max(0, min(100, round(shrunk + crossed_boost(crossings))))


@pytest.mark.parametrize(("a", "b"), list(itertools.product(PEOPLE, PEOPLE)))
@pytest.mark.parametrize(("distance", "crossings"), [(None, 0), (3.0, 1), (250.0, 5)])
def test_points_follow_the_documented_formula(a: Person, b: Person, distance: float | None, crossings: int) -> None:
    """points() computes the shared factors once; it must still give the formula's number."""
    expected = reference_score(a, b, distance, crossings)
    assert points(a, b, distance_km=distance, crossings=crossings) == expected
    assert score(a, b, distance_km=distance, crossings=crossings).score == expected


def test_reasons_match_the_data() -> None:
    a = Person(age=30, interests=("chess", "hiking", "jazz", "rowing"), style=SECURE)
    b = Person(age=31, interests=("jazz", "hiking", "chess", "surfing"), style=AVOIDANT)
    result = score(a, b, distance_km=12.3, crossings=2)
    assert result.reasons == [
        "3 shared interests: chess, hiking, jazz",
        "You crossed paths twice this week",
        "Your ways of relating fit well",
        "12 km away",
    ]
    assert not any(style in line.lower() for line in result.reasons for style in ("avoidant", "secure", "anxious"))


def test_missing_factor_is_left_out_and_little_data_shrinks_to_the_middle() -> None:
    bare = score(Person(age=30), Person(age=30))
    assert bare.breakdown["attachment"] is None and bare.breakdown["interests"] is None
    # Perfect age fit alone (15% of the weight) is shrunk well toward 50.
    assert 50 < bare.score < 75
    full = score(
        Person(age=30, interests=("jazz",), style=SECURE, values={"smoking": "never"}),
        Person(age=30, interests=("jazz",), style=SECURE, values={"smoking": "never"}),
    )
    assert full.score == 100


def test_family_plans_is_a_deal_breaker() -> None:
    base = {"smoking": "never", "drinking": "socially", "faith_importance": "somewhat_important"}
    same = score(
        Person(age=30, values={**base, "family_plans": "wants_children"}),
        Person(age=30, values={**base, "family_plans": "wants_children"}),
    )
    opposite = score(
        Person(age=30, values={**base, "family_plans": "wants_children"}),
        Person(age=30, values={**base, "family_plans": "does_not_want_children"}),
    )
    smoking_differs = score(
        Person(age=30, values={**base, "family_plans": "wants_children"}),
        Person(age=30, values={**base, "family_plans": "wants_children", "smoking": "regularly"}),
    )
    assert opposite.breakdown["values"] == 0
    assert opposite.score < smoking_differs.score < same.score
    assert "You differ on wanting children" in opposite.reasons


def test_anxious_avoidant_scores_lowest_and_crossed_paths_boost() -> None:
    def with_style(style: str) -> Person:
        return Person(age=30, style=style)

    secure = score(with_style(SECURE), with_style(SECURE)).score
    clash = score(with_style(ANXIOUS), with_style(AVOIDANT)).score
    assert secure > clash
    assert score(with_style(ANXIOUS), with_style(AVOIDANT), crossings=1).score == clash + 4


def test_distance_decays_smoothly() -> None:
    near, mid, far = (distance_fit(Person(age=30), d) for d in (1.0, 25.0, 200.0))
    assert 1 > near > mid > far > 0
    assert mid == pytest.approx(0.5)
