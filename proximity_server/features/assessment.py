"""The attachment assessment: 18 statements in our own words, answered on a
1–7 agreement scale (1 = strongly disagree, 7 = strongly agree).

Nine items measure attachment anxiety (``anx_*``), nine avoidance
(``avd_*``). Reverse-scored items (:data:`REVERSED`: ``anx_6``, ``anx_9``,
``avd_3``, ``avd_6``, ``avd_9``) count as ``8 − answer``. A dimension's score
is the mean of its nine items (1–7); a mean of at least
:data:`HIGH_THRESHOLD` (4, the scale's midpoint) is "high". The style:

    anxiety low,  avoidance low   → secure
    anxiety high, avoidance low   → anxious
    anxiety low,  avoidance high  → avoidant
    anxiety high, avoidance high  → fearful_avoidant

Only the owner reads their result (also on ``GET /me/assessment``, beside the
statements, so a client learns whether it was taken without a 404); a retake is allowed once per
:data:`RETAKE_INTERVAL` (24 h after the last one; 429 with Retry-After).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.codes import ErrorCode
from proximity_server.features.compatibility import ANXIOUS, AVOIDANT, FEARFUL, SECURE
from proximity_server.features.errors import BadRequest, NotFound, RateLimited
from store.assessment import AssessmentRecord, AssessmentStore

SCALE_MIN: Final = 1
SCALE_MAX: Final = 7
HIGH_THRESHOLD: Final = 4.0
RETAKE_INTERVAL: Final = dt.timedelta(days=1)
RETAKE_CODE: Final = "retake_too_soon"

ITEMS: Final[tuple[tuple[str, str], ...]] = (
    ("anx_1", "I worry that the people I date will lose interest in me."),
    ("anx_2", "When someone I like is slow to reply, I assume something is wrong."),
    ("anx_3", "I need a lot of reassurance that a partner cares about me."),
    ("anx_4", "I fear that once someone really knows me, they will leave."),
    ("anx_5", "I often wish partners felt as strongly about me as I do about them."),
    ("anx_6", "I rarely worry about being left."),
    ("anx_7", "My mood depends a lot on how a partner treats me that day."),
    ("anx_8", "When a partner is away, I feel uneasy until we reconnect."),
    ("anx_9", "I feel sure that the people close to me will stay."),
    ("avd_1", "I prefer not to depend on a partner."),
    ("avd_2", "I get uncomfortable when someone wants to be very close."),
    ("avd_3", "I find it easy to share my feelings with a partner."),
    ("avd_4", "I keep parts of myself private even from people I am close to."),
    ("avd_5", "I pull back when a relationship starts to feel serious."),
    ("avd_6", "I am comfortable leaning on a partner when things are hard."),
    ("avd_7", "Needing someone feels like a weakness to me."),
    ("avd_8", "I like to keep some emotional distance in relationships."),
    ("avd_9", "Turning to a partner for comfort comes naturally to me."),
)
ITEM_IDS: Final = tuple(item_id for item_id, _ in ITEMS)
REVERSED: Final = frozenset({"anx_6", "anx_9", "avd_3", "avd_6", "avd_9"})

INSIGHTS: Final[Mapping[str, tuple[str, ...]]] = {
    SECURE: (
        "You tend to trust closeness and give others room at the same time.",
        "You can say what you need without fearing it will push people away.",
        "Keep doing what works: steady, clear communication.",
    ),
    ANXIOUS: (
        "Closeness matters a lot to you, and silence can feel like a warning.",
        "Naming what you need early tends to calm the worry more than waiting does.",
        "People who reply consistently will likely feel easiest to be with.",
    ),
    AVOIDANT: (
        "You value independence and may step back when things get intense.",
        "Telling someone you need space, rather than going quiet, keeps trust intact.",
        "Small, regular moments of openness can make closeness feel less heavy.",
    ),
    FEARFUL: (
        "You may want closeness and feel wary of it at the same time.",
        "Going slowly, and saying so, can make it safer to open up.",
        "Steady, patient people often help the push and pull settle.",
    ),
}


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code=ErrorCode.INVALID_FIELD)


def parse_answers(value: object) -> dict[str, int]:
    """Every item answered with an integer 1–7, nothing else."""
    if not isinstance(value, dict):
        raise _invalid("'answers' must be an object {item_id: 1..7}")
    unknown = sorted(set(value) - set(ITEM_IDS))
    if unknown:
        raise _invalid(f"unknown item(s): {', '.join(repr(u[:20]) for u in unknown[:5])}")
    missing = [i for i in ITEM_IDS if i not in value]
    if missing:
        raise _invalid(f"unanswered item(s): {', '.join(missing)}")
    answers: dict[str, int] = {}
    for item_id in ITEM_IDS:
        answer = value[item_id]
        if isinstance(answer, bool) or not isinstance(answer, int) or not SCALE_MIN <= answer <= SCALE_MAX:
            raise _invalid(f"'{item_id}' must be an integer {SCALE_MIN}–{SCALE_MAX}")
        answers[item_id] = answer
    return answers


def _scored(item_id: str, answer: int) -> int:
    return SCALE_MIN + SCALE_MAX - answer if item_id in REVERSED else answer


@dataclass(frozen=True, slots=True)
class Scores:
    anxiety: float
    avoidance: float
    style: str


def style_of(anxiety: float, avoidance: float) -> str:
    high_anx, high_avd = anxiety >= HIGH_THRESHOLD, avoidance >= HIGH_THRESHOLD
    if high_anx and high_avd:
        return FEARFUL
    if high_anx:
        return ANXIOUS
    if high_avd:
        return AVOIDANT
    return SECURE


def score_answers(answers: Mapping[str, int]) -> Scores:
    def mean(prefix: str) -> float:
        values = [_scored(i, answers[i]) for i in ITEM_IDS if i.startswith(prefix)]
        return round(math.fsum(values) / len(values), 2)

    anxiety, avoidance = mean("anx_"), mean("avd_")
    return Scores(anxiety, avoidance, style_of(anxiety, avoidance))


def questions_view() -> dict[str, Any]:
    return {
        "scale": {"min": SCALE_MIN, "max": SCALE_MAX, "min_label": "strongly disagree", "max_label": "strongly agree"},
        "items": [{"id": item_id, "text": text} for item_id, text in ITEMS],
    }


def result_view(record: AssessmentRecord, now: dt.datetime) -> dict[str, Any]:
    next_at = record.taken_at + RETAKE_INTERVAL
    return {
        "anxiety": record.anxiety,
        "avoidance": record.avoidance,
        "style": record.style,
        "insights": list(INSIGHTS[record.style]),
        "taken_at": record.taken_at.isoformat(),
        "retake_after": max(next_at, now).isoformat(),
    }


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class AssessmentService:
    store: AssessmentStore
    clock: Callable[[], dt.datetime] = utc_now

    async def submit(self, user_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        answers = parse_answers(data.get("answers"))
        scores = score_answers(answers)
        now = self.clock()
        record = await self.store.save(
            user_id, answers, scores.anxiety, scores.avoidance, scores.style, now, now - RETAKE_INTERVAL
        )
        if record is None:
            current = await self.store.get(user_id)
            if current is None:
                raise NotFound("no such account")
            wait = max(1, math.ceil((current.taken_at + RETAKE_INTERVAL - now).total_seconds()))
            raise RateLimited(
                "you can retake the assessment once a day", code=RETAKE_CODE, headers={"Retry-After": str(wait)}
            )
        return result_view(record, now)

    async def questions(self, user_id: str) -> dict[str, Any]:
        """The statements, and the owner's current result (None before the first)."""
        record = await self.store.get(user_id)
        return {**questions_view(), "result": result_view(record, self.clock()) if record is not None else None}

    async def result(self, user_id: str) -> dict[str, Any]:
        record = await self.store.get(user_id)
        if record is None:
            raise NotFound("take the assessment first (PUT /me/assessment)")
        return result_view(record, self.clock())
