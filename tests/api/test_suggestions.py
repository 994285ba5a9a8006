"""GET /suggestions, the suggestion job's lock, and crossed paths, on real services."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import asyncpg
import pytest

from config.settings import Settings
from proximity_server.app import state as keys
from proximity_server.features.crossed_paths import CrossedPaths
from proximity_server.features.profiles import PROFILE_REQUIRED_CODE
from proximity_server.features.suggestions import SuggestionJob, SuggestionService
from store.crossed_paths import CrossedPathsStore, ordered
from store.job_lock import JobLock
from store.proximity import MatchDecision
from store.suggestions import Entry, FencedOut
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, User, sign_up, with_profile


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def suggested(client: AppClient, user: User) -> list[dict[str, object]]:
    resp = await client.get("/suggestions", headers=user.headers)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, object]] = (await resp.json())["items"]
    return items


def service_at(client: AppClient, when: dt.datetime, **changes: object) -> SuggestionService:
    return dataclasses.replace(client.app[keys.SUGGESTIONS], clock=lambda: when, **changes)  # type: ignore[arg-type]


async def man(client: AppClient, **changes: object) -> User:
    return await with_profile(client, gender="man", interested_in=["woman"], **changes)


async def test_cards_carry_compatibility_and_reasons(client: AppClient) -> None:
    viewer = await with_profile(client, interests=["jazz", "hiking", "chess"], location={"lat": 52.52, "lon": 13.4})
    other = await man(client, interests=["jazz", "hiking", "chess"], location={"lat": 52.52, "lon": 13.57})
    items = await suggested(client, viewer)
    assert [i["user_id"] for i in items] == [other.user_id]
    compat = items[0]["compatibility"]
    assert isinstance(compat, dict) and 0 <= compat["score"] <= 100
    assert "3 shared interests: chess, hiking, jazz" in compat["reasons"]
    assert "12 km away" in compat["reasons"]


async def test_every_exclusion(client: AppClient, pg: asyncpg.Connection) -> None:
    viewer = await with_profile(client)
    keep = await man(client)
    liked, passed, blocked, blocker, reported, deleted, matched = [await man(client) for _ in range(7)]
    too_old = await man(client, birthdate="1950-01-01")
    wants_older = await man(client, age_min=40)
    await with_profile(client, gender="woman", interested_in=["woman"])  # wrong gender both ways
    h = viewer.headers
    assert (await client.post("/likes", json={"user_id": liked.user_id, "action": "like"}, headers=h)).status < 300
    assert (await client.post("/likes", json={"user_id": passed.user_id, "action": "pass"}, headers=h)).status < 300
    assert (await client.post("/blocks", json={"user_id": blocked.user_id}, headers=h)).status < 300
    blocker_h = blocker.headers
    assert (await client.post("/blocks", json={"user_id": viewer.user_id}, headers=blocker_h)).status < 300
    body = {"user_id": reported.user_id, "reason": "spam"}
    assert (await client.post("/reports", json=body, headers=h)).status < 300
    await pg.execute("UPDATE users SET deleted_at = now() WHERE id = $1", deleted.user_id)
    lo, hi = ordered(viewer.user_id, matched.user_id)
    await pg.execute("INSERT INTO matches (user_a, user_b) VALUES ($1, $2)", lo, hi)
    await client.patch("/me/profile", json={"age_max": 60}, headers=h)
    ids = {i["user_id"] for i in await suggested(client, viewer)}
    assert ids == {keep.user_id}
    assert too_old.user_id not in ids and wants_older.user_id not in ids


async def test_stable_all_day_then_new_next_day_without_repeats(client: AppClient) -> None:
    viewer = await with_profile(client)
    people = {(await man(client)).user_id for _ in range(5)}
    now = dt.datetime.now(dt.UTC)
    svc = service_at(client, now, per_day=2)
    first = [i["user_id"] for i in (await svc.today(viewer.user_id))["items"]]
    await man(client)  # a newcomer later the same day changes nothing
    again = [
        i["user_id"]
        for i in (await service_at(client, now + dt.timedelta(hours=1), per_day=2).today(viewer.user_id))["items"]
    ]
    assert first == again and len(first) == 2
    tomorrow = [
        i["user_id"]
        for i in (await service_at(client, now + dt.timedelta(days=1), per_day=2).today(viewer.user_id))["items"]
    ]
    assert tomorrow and not set(tomorrow) & set(first)  # shown in the last 7 days: excluded
    assert set(first) <= people


async def test_exposure_cap(client: AppClient) -> None:
    popular = await man(client)
    viewers = [await with_profile(client) for _ in range(3)]
    svc = service_at(client, dt.datetime.now(dt.UTC), max_exposure=2)
    seen = [popular.user_id in {i["user_id"] for i in (await svc.today(v.user_id))["items"]} for v in viewers]
    assert seen == [True, True, False]


async def test_newcomer_gets_a_slot(client: AppClient, pg: asyncpg.Connection) -> None:
    viewer = await with_profile(client, interests=["jazz"])
    veterans = [await man(client, interests=["jazz"]) for _ in range(3)]
    newcomer = await man(client)
    await pg.execute(
        "UPDATE profiles SET created_at = now() - interval '30 days' WHERE user_id = ANY($1::uuid[])",
        [v.user_id for v in veterans],
    )
    items = (await service_at(client, dt.datetime.now(dt.UTC), per_day=2).today(viewer.user_id))["items"]
    assert newcomer.user_id in {i["user_id"] for i in items}


async def test_job_runs_once_when_two_compete_and_the_other_takes_over(client: AppClient) -> None:
    app = client.app
    viewer = await with_profile(client)
    await man(client)
    svc, redis, prefix = app[keys.SUGGESTIONS], app[keys.REDIS], app[keys.SETTINGS].redis_prefix
    a = SuggestionJob(svc, JobLock(redis, prefix, "test-job", 300))
    b = SuggestionJob(svc, JobLock(redis, prefix, "test-job", 300))
    results = await asyncio.gather(a.run_once(), b.run_once())
    assert sorted(results, key=lambda r: r is None) == [2, None]  # both people are active
    # A holder that dies keeps its lock until it expires; then another takes over.
    dead, heir = JobLock(redis, prefix, "takeover", 200), JobLock(redis, prefix, "takeover", 200)
    old = await dead.acquire()
    assert old is not None and await heir.acquire() is None
    await asyncio.sleep(0.3)
    new = await heir.acquire()
    assert new is not None and new > old
    day = dt.date(2030, 1, 1)
    now = dt.datetime.now(dt.UTC)
    async with svc.store.lists(background=True) as writer:
        assert await writer.save_list(viewer.user_id, day, now, [], fence=new)
        with pytest.raises(FencedOut):
            await writer.save_list(viewer.user_id, day + dt.timedelta(days=1), now, [Entry(viewer.user_id, 1, ())], old)


async def test_crossed_paths_recorded_opted_out_expired_and_erased_on_block(
    client: AppClient, pg: asyncpg.Connection
) -> None:
    a, b, shy = await with_profile(client), await man(client), await man(client, crossed_paths=False)
    now = dt.datetime.now(dt.UTC)
    store = CrossedPathsStore(client.app[keys.PG_POOL])
    crossed = CrossedPaths(store, clock=lambda: now)
    for pair in ((a, b), (b, a), (a, shy)):
        crossed.observe(MatchDecision(True, True, ("music",), True, (pair[0].user_id, pair[1].user_id)))
    crossed.observe(MatchDecision(True, True, ("music",), False, (a.user_id, b.user_id)))  # not a new nudge
    assert await crossed.flush_once() == 1
    assert await store.between(a.user_id, b.user_id, now) == 2
    assert await store.between(a.user_id, shy.user_id, now) == 0
    assert "You crossed paths twice this week" in (await suggested(client, a))[0]["compatibility"]["reasons"]  # type: ignore[index]
    later = CrossedPaths(store, clock=lambda: now + dt.timedelta(days=15))
    assert await later.prune() == 1
    crossed.observe(MatchDecision(True, True, ("music",), True, (a.user_id, b.user_id)))
    await crossed.flush_once()
    assert await pg.fetchval("SELECT count(*) FROM crossed_paths") == 1
    assert (await client.post("/blocks", json={"user_id": a.user_id}, headers=b.headers)).status < 300
    assert await pg.fetchval("SELECT count(*) FROM crossed_paths") == 0


async def test_the_day_is_the_persons_own(client: AppClient) -> None:
    """Auckland is UTC+13 in December: its day turns at 11:00 UTC."""
    viewer = await with_profile(client, time_zone="Pacific/Auckland")
    for _ in range(4):
        await man(client)
    evening_utc = dt.datetime(2026, 12, 4, 20, 0, tzinfo=dt.UTC)
    first = await service_at(client, evening_utc, per_day=2).today(viewer.user_id)
    assert first["date"] == "2026-12-05" and len(first["items"]) == 2
    before_midnight = await service_at(client, dt.datetime(2026, 12, 5, 10, 59, tzinfo=dt.UTC), per_day=2).today(
        viewer.user_id
    )
    assert before_midnight == first
    after_midnight = await service_at(client, dt.datetime(2026, 12, 5, 11, 1, tzinfo=dt.UTC), per_day=2).today(
        viewer.user_id
    )
    assert after_midnight["date"] == "2026-12-06"
    assert not {i["user_id"] for i in after_midnight["items"]} & {i["user_id"] for i in first["items"]}


async def test_no_profile_no_suggestions(client: AppClient) -> None:
    user = await sign_up(client)
    resp = await client.get("/suggestions", headers=user.headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == PROFILE_REQUIRED_CODE


async def test_distance_wishes_apply_both_ways(client: AppClient) -> None:
    """A viewer with a maximum distance reads the box around them and the
    people without a location; a candidate's own maximum applies too."""
    berlin = {"lat": 52.52, "lon": 13.405}
    viewer = await with_profile(client, location=berlin, max_distance_km=50)
    potsdam = await man(client, location={"lat": 52.39, "lon": 13.06})  # about 27 km
    unplaced = await man(client)
    hamburg = await man(client, location={"lat": 53.55, "lon": 9.99})  # about 255 km
    picky = await man(client, location={"lat": 52.52, "lon": 13.58}, max_distance_km=5)  # 12 km, wants 5
    got = {i["user_id"]: i for i in await suggested(client, viewer)}
    assert set(got) == {potsdam.user_id, unplaced.user_id}
    km = got[potsdam.user_id]["distance_km"]
    assert isinstance(km, int | float) and 20 < km < 35
    assert hamburg.user_id not in got and picky.user_id not in got
