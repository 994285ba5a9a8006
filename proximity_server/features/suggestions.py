"""Daily suggestions: up to ``SUGGESTIONS_PER_DAY`` people, best first, the
same all day in the person's time zone.

A list is made once per person and local date: by the background job
(:class:`SuggestionJob`, for people active in the last 7 days) or, for anyone
it missed, on their first request of the day. Making a list: pick candidates
in SQL (store/suggestions.py), score each with features/compatibility.py, keep
the best; if none of them is in their first week but one such candidate fits,
the last slot goes to the best of those.

The job runs in one process at a time under a Redis lock with expiry and a
fencing token (store/job_lock.py); it extends the lock after every batch and
stops when it lost it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from proximity_server.features.card_scores import person, person_of
from proximity_server.features.compatibility import Person, points, score
from proximity_server.features.profiles import ProfileService, age_on, profile_required, public_view, years_before
from proximity_server.features.taxonomy import Taxonomy
from store.job_lock import JobLock
from store.profiles import Profile
from store.suggestions import CandidateQuery, CandidateRow, Entry, FencedOut, ListWriter, SuggestionStore

log = logging.getLogger(__name__)

CANDIDATE_POOL: Final = 100
NEWCOMER_POOL: Final = 20
NEWCOMER_AGE: Final = dt.timedelta(days=7)
JOB_BATCH: Final = 200
JOB_CONCURRENCY: Final = 4
JOB_INTERVAL_SECONDS: Final = 300.0
JOB_LOCK_TTL_MS: Final = 60_000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_date(now: dt.datetime, time_zone: str) -> dt.date:
    try:
        return now.astimezone(zoneinfo.ZoneInfo(time_zone)).date()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return now.astimezone(dt.UTC).date()


def walk_start(user_id: str, day: dt.date) -> str:
    """Where the day's candidate walk begins: rotates per person and day."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"{user_id}:{day.isoformat()}".encode()).digest()[:16]))


@dataclass(frozen=True, slots=True)
class SuggestionService:
    profiles: ProfileService
    store: SuggestionStore
    taxonomy: Taxonomy
    per_day: int
    max_exposure: int
    clock: Callable[[], dt.datetime] = utc_now

    async def today(self, user_id: str) -> dict[str, Any]:
        now = self.clock()
        # A stored list is served with one read, made before the person's
        # local date is known (the read covers the dates it can be).
        around = await self.store.around(user_id, now.date())
        if around is None:
            raise profile_required()
        day = local_date(now, around.time_zone)
        if day not in around.days:
            viewer = await self.profiles.viewer_profile(user_id)
            async with self.store.lists() as writer:
                await self.make_list(writer, viewer, await self.store.viewer_extras(user_id), now)
            around = await self.store.around(user_id, now.date()) or around
        items = []
        for c in around.cards.get(day, []):
            view = public_view(c.profile, c.photos, c.distance_km, self.profiles.urls)
            view["compatibility"] = {"score": c.score, "reasons": list(c.reasons)}
            items.append(view)
        return {"date": day.isoformat(), "items": items}

    async def make_list(
        self, writer: ListWriter, viewer: Profile, style: str | None, now: dt.datetime, fence: int | None = None
    ) -> bool:
        """Pick, score and store the day's list (False if one existed);
        ``style`` is the viewer's attachment style, if they took the assessment."""
        day = local_date(now, viewer.prefs.time_zone)
        today = now.date()
        prefs = viewer.prefs
        query = CandidateQuery(
            viewer=viewer,
            viewer_age=age_on(viewer.birthdate, today),
            born_on_or_before=years_before(today, prefs.age_min) if prefs.age_min is not None else None,
            born_after=years_before(today, prefs.age_max + 1) if prefs.age_max is not None else None,
            now=now,
            day_start=dt.datetime.combine(today, dt.time(), dt.UTC),
            max_exposure=self.max_exposure,
            start=walk_start(viewer.user_id, day),
            limit=CANDIDATE_POOL,
            newcomer_limit=NEWCOMER_POOL,
        )
        candidates = await writer.candidates(query)
        me = person(viewer, self.taxonomy, today, style, 0.0)
        entries = self.rank(me, candidates, today, now)
        return await writer.save_list(viewer.user_id, day, now, entries, fence)

    def rank(self, me: Person, candidates: list[CandidateRow], today: dt.date, now: dt.datetime) -> list[Entry]:
        """The best ``per_day``, best first (ties by id); reasons only for those."""
        scored = []
        others = {}
        for c in candidates:
            other = person_of(
                c.birthdate, c.interests, c.values, c.age_min, c.age_max, c.max_distance_km,
                self.taxonomy, today, c.style, c.days_since_active,
            )  # fmt: skip
            others[c.user_id] = (other, c)
            points_ = points(me, other, distance_km=c.distance_km, crossings=c.crossings)
            scored.append((points_, c.user_id, c.created_at >= now - NEWCOMER_AGE))
        scored.sort(key=lambda s: (-s[0], s[1]))
        chosen = scored[: self.per_day]
        if chosen and not any(newcomer for _, _, newcomer in chosen):
            best_new = next((s for s in scored[self.per_day :] if s[2]), None)
            if best_new is not None:
                chosen[-1] = best_new
        entries = []
        for _, user_id, _ in chosen:
            other, c = others[user_id]
            result = score(me, other, distance_km=c.distance_km, crossings=c.crossings)
            entries.append(Entry(user_id, result.score, tuple(result.reasons)))
        return entries


class SuggestionJob:
    """Precompute lists for active people, once across all processes."""

    def __init__(self, service: SuggestionService, lock: JobLock, interval: float = JOB_INTERVAL_SECONDS) -> None:
        self._service = service
        self._lock = lock
        self._interval = interval
        self.last_run_people = 0

    async def run_once(self) -> int | None:
        """Lists made, or None when another process holds the lock."""
        token = await self._lock.acquire()
        if token is None:
            return None
        made = 0
        try:
            now = self._service.clock()
            after: str | None = None
            while True:
                people = await self._service.store.due_people(now, after, JOB_BATCH)
                if not people:
                    break
                queue = list(reversed(people))
                made += sum(
                    await asyncio.gather(*(self._worker(queue, now, token) for _ in range(JOB_CONCURRENCY)))
                )
                after = people[-1][0].user_id
                if not await self._lock.extend(token):
                    log.warning("suggestion job lost its lock; stopping")
                    break
        except FencedOut:
            log.warning("suggestion job was fenced out by a newer holder")
        finally:
            await self._lock.release(token)
        self.last_run_people = made
        return made

    async def _worker(self, queue: list[tuple[Profile, str | None]], now: dt.datetime, token: int) -> int:
        """Make lists for people taken from ``queue`` until it is empty, on one
        connection kept for the batch."""
        made = 0
        async with self._service.store.lists(background=True) as writer:
            while queue:
                profile, style = queue.pop()
                made += await self._service.make_list(writer, profile, style, now, token)
        return made

    async def run(self) -> None:
        task = asyncio.current_task()
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("suggestion job failed; will retry", extra={"error": repr(exc)})
            if task is not None and task.cancelling():
                # A stop arrived while a driver call absorbed the CancelledError:
                # honour it here, or the shutdown waits for the job forever.
                raise asyncio.CancelledError
            await asyncio.sleep(self._interval)
