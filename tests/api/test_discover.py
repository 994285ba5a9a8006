"""GET /discover: mutual preferences, filters, distance and keyset pagination."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from config.settings import Settings
from proximity_server.features.discover import decode_cursor, encode_cursor
from store.discover import bounding_box, haversine_km
from store.profiles import Location
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, User, birthdate_for_age, sign_up, upload, with_profile

BERLIN = {"lat": 52.52, "lon": 13.405}


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def discover(client: AppClient, user: User, **params: object) -> list[str]:
    resp = await client.get("/discover", params={k: str(v) for k, v in params.items()}, headers=user.headers)
    assert resp.status == 200, await resp.text()
    return [item["user_id"] for item in (await resp.json())["items"]]


async def man_for_women(client: AppClient, **changes: object) -> User:
    return await with_profile(client, gender="man", interested_in=["woman"], **changes)


async def test_only_people_who_fit_both_ways(client: AppClient, pg: asyncpg.Connection) -> None:
    viewer = await with_profile(client, gender="woman", interested_in=["man"])
    fits = await man_for_women(client)
    wants_men = await with_profile(client, gender="man", interested_in=["man"])
    woman = await with_profile(client, gender="woman", interested_in=["woman", "man"])
    nonbinary = await with_profile(client, gender="nonbinary", interested_in=["woman"])
    both = await with_profile(client, gender="man", interested_in=["man", "woman"])
    await sign_up(client)  # no profile: never listed
    deleted = await man_for_women(client)
    await pg.execute("UPDATE users SET deleted_at = now() WHERE id = $1", deleted.user_id)
    found = await discover(client, viewer)
    assert found == [fits.user_id, both.user_id]
    assert viewer.user_id not in found
    for absent in (wants_men, woman, nonbinary, deleted):
        assert absent.user_id not in found


async def test_items_are_public_profiles(client: AppClient) -> None:
    viewer = await with_profile(client, location=BERLIN)
    candidate = await man_for_women(client, display_name="Bob", location={"lat": 52.52, "lon": 13.705})
    await upload(client, candidate)
    resp = await client.get("/discover", headers=viewer.headers)
    body = await resp.json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert set(item) == {
        "user_id",
        "display_name",
        "age",
        "gender",
        "bio",
        "interests",
        "photos",
        "distance_km",
        "compatibility",
    }
    assert item["display_name"] == "Bob" and item["age"] == 30
    assert item["distance_km"] == 20
    assert len(item["photos"]) == 1 and item["photos"][0]["url"].startswith("/photos/")
    assert "52.52" not in await resp.text()


async def test_pages_are_stable_while_others_sign_up(client: AppClient) -> None:
    viewer = await with_profile(client)
    people = [(await man_for_women(client)).user_id for _ in range(5)]
    resp = await client.get("/discover", params={"limit": "2"}, headers=viewer.headers)
    first = await resp.json()
    assert [i["user_id"] for i in first["items"]] == people[:2]
    newcomer = await man_for_women(client)  # signs up between pages
    seen = [i["user_id"] for i in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        resp = await client.get("/discover", params={"limit": "2", "cursor": cursor}, headers=viewer.headers)
        assert resp.status == 200
        page = await resp.json()
        assert 1 <= len(page["items"]) <= 2
        seen += [i["user_id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [*people, newcomer.user_id]


async def test_default_and_maximum_page_size(client: AppClient) -> None:
    viewer = await with_profile(client)
    for _ in range(21):
        await man_for_women(client)
    body = await (await client.get("/discover", headers=viewer.headers)).json()
    assert len(body["items"]) == 20 and body["next_cursor"] is not None
    assert len(await discover(client, viewer, limit=50)) == 21


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "51"},
        {"limit": "ten"},
        {"cursor": "garbage!"},
        {"cursor": "bm90IGEgY3Vyc29y"},  # "not a cursor"
        {"cursor": ""},
        {"min_age": "17"},
        {"min_age": "30", "max_age": "25"},
        {"gender": "robot"},
        {"max_distance_km": "-5"},
        {"max_distance_km": "nan"},
        {"sort": "age"},
    ],
)
async def test_bad_parameters_are_400(client: AppClient, params: dict[str, str]) -> None:
    viewer = await with_profile(client, location=BERLIN)
    resp = await client.get("/discover", params=params, headers=viewer.headers)
    assert resp.status == 400, params


async def test_needs_a_profile_and_a_token(client: AppClient) -> None:
    assert (await client.get("/discover")).status == 401
    user = await sign_up(client)
    resp = await client.get("/discover", headers=user.headers)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "profile_required"


async def test_age_and_gender_filters(client: AppClient) -> None:
    viewer = await with_profile(client, interested_in=["man", "nonbinary"])
    young = await man_for_women(client, birthdate=birthdate_for_age(22))
    middle = await man_for_women(client, birthdate=birthdate_for_age(35))
    old = await man_for_women(client, birthdate=birthdate_for_age(60))
    nonbinary = await with_profile(client, gender="nonbinary", interested_in=["woman"])
    assert await discover(client, viewer, min_age=30) == [middle.user_id, old.user_id, nonbinary.user_id]
    assert await discover(client, viewer, max_age=35) == [young.user_id, middle.user_id, nonbinary.user_id]
    assert await discover(client, viewer, min_age=35, max_age=35) == [middle.user_id]
    assert await discover(client, viewer, gender="nonbinary") == [nonbinary.user_id]
    assert await discover(client, viewer, gender="woman") == []  # not what the viewer wants


async def test_distance_filter(client: AppClient) -> None:
    viewer = await with_profile(client, location=BERLIN)
    near = await man_for_women(client, location={"lat": 52.56, "lon": 13.40})  # ~4.5 km
    town = await man_for_women(client, location={"lat": 52.40, "lon": 13.06})  # Potsdam, ~27 km
    far = await man_for_women(client, location={"lat": 48.14, "lon": 11.58})  # Munich, ~500 km
    nowhere = await man_for_women(client)
    assert await discover(client, viewer) == [near.user_id, town.user_id, far.user_id, nowhere.user_id]
    assert await discover(client, viewer, max_distance_km=10) == [near.user_id]
    assert await discover(client, viewer, max_distance_km=30) == [near.user_id, town.user_id]
    assert await discover(client, viewer, max_distance_km=1000) == [near.user_id, town.user_id, far.user_id]
    no_location = await with_profile(client)
    resp = await client.get("/discover", params={"max_distance_km": "10"}, headers=no_location.headers)
    assert resp.status == 400


def test_cursor_round_trip() -> None:
    when = dt.datetime(2026, 11, 22, 5, 30, 1, 123456, tzinfo=dt.UTC)
    user_id = "3f2b1c4d-0000-4000-8000-000000000001"
    assert decode_cursor(encode_cursor(when, user_id)) == (when, user_id)


def test_bounding_box_contains_the_circle() -> None:
    centre = Location(60.0, 10.0)
    box = bounding_box(centre, 100.0)
    assert box.lon_min is not None and box.lon_max is not None
    for point in (Location(box.lat_max, 10.0), Location(60.0, box.lon_max), Location(box.lat_min, box.lon_min)):
        assert haversine_km(centre, point) >= 99.9
    assert bounding_box(Location(89.5, 0.0), 100.0).lon_min is None  # covers the pole
    assert bounding_box(Location(0.0, 179.9), 100.0).lon_min is None  # crosses the antimeridian


async def test_saved_age_preferences_apply_both_ways(client: AppClient) -> None:
    viewer = await with_profile(client, birthdate=birthdate_for_age(30), age_min=25, age_max=35)
    fits = await man_for_women(client, birthdate=birthdate_for_age(30))
    too_young = await man_for_women(client, birthdate=birthdate_for_age(24))
    too_old = await man_for_women(client, birthdate=birthdate_for_age(36))
    wants_younger = await man_for_women(client, birthdate=birthdate_for_age(30), age_max=28)
    wants_older = await man_for_women(client, birthdate=birthdate_for_age(30), age_min=31)
    admits_viewer = await man_for_women(client, birthdate=birthdate_for_age(34), age_min=30, age_max=30)
    assert await discover(client, viewer) == [fits.user_id, admits_viewer.user_id]
    # Query filters narrow the saved range, never widen it.
    assert await discover(client, viewer, min_age=18, max_age=40) == [fits.user_id, admits_viewer.user_id]
    assert await discover(client, viewer, min_age=31) == [admits_viewer.user_id]
    assert await discover(client, viewer, max_age=24) == []
    for absent in (too_young, too_old, wants_younger, wants_older):
        assert absent.user_id not in await discover(client, viewer, limit=50)


async def test_saved_distance_preferences_apply_both_ways(client: AppClient) -> None:
    viewer = await with_profile(client, location=BERLIN, max_distance_km=50)
    near = await man_for_women(client, location={"lat": 52.52, "lon": 13.705})  # ~20 km
    far = await man_for_women(client, location={"lat": 53.52, "lon": 13.405})  # ~111 km
    nowhere = await man_for_women(client)  # no location: the preference cannot apply
    wants_closer = await man_for_women(client, location={"lat": 52.52, "lon": 13.705}, max_distance_km=10)
    wants_near = await man_for_women(client, location={"lat": 52.52, "lon": 13.705}, max_distance_km=30)
    found = await discover(client, viewer)
    assert found == [near.user_id, nowhere.user_id, wants_near.user_id]
    assert far.user_id not in found and wants_closer.user_id not in found
    # The explicit filter still needs a known location, within both limits.
    assert await discover(client, viewer, max_distance_km=100) == [near.user_id, wants_near.user_id]
    # Without the viewer's location neither side's distance preference applies.
    unplaced = await with_profile(client, max_distance_km=5)
    assert far.user_id in await discover(client, unplaced) and wants_closer.user_id in await discover(client, unplaced)


async def test_cards_carry_compatibility_from_the_viewer(client: AppClient) -> None:
    viewer = await with_profile(client, location=BERLIN, interests=["hiking", "jazz"], family_plans="wants_children")
    alike = await man_for_women(
        client, location={"lat": 52.52, "lon": 13.705}, interests=["jazz", "hiking"], family_plans="wants_children"
    )
    opposite = await man_for_women(client, interests=["golf"], family_plans="does_not_want_children")
    resp = await client.get("/discover", headers=viewer.headers)
    cards = {item["user_id"]: item["compatibility"] for item in (await resp.json())["items"]}
    assert set(cards) == {alike.user_id, opposite.user_id}
    for compatibility in cards.values():
        assert set(compatibility) == {"score", "reasons"} and 0 <= compatibility["score"] <= 100
    assert "2 shared interests: hiking, jazz" in cards[alike.user_id]["reasons"]
    assert "20 km away" in cards[alike.user_id]["reasons"]
    assert "You differ on wanting children" in cards[opposite.user_id]["reasons"]
    assert cards[alike.user_id]["score"] > cards[opposite.user_id]["score"]


async def test_compatibility_is_read_in_one_batch_per_page(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The number of queries a page costs does not grow with its cards."""
    viewer = await with_profile(client)
    for _ in range(6):
        await man_for_women(client)
    queries: list[str] = []
    for name in ("fetch", "fetchrow", "fetchval", "execute"):
        original = getattr(asyncpg.pool.Pool, name)

        def spy(self: asyncpg.Pool, query: str, *args: object, _original: object = original, **kw: object) -> object:
            queries.append(query)
            return _original(self, query, *args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(asyncpg.pool.Pool, name, spy)
    counts = []
    for limit in (1, 6):
        queries.clear()
        resp = await client.get("/discover", params={"limit": str(limit)}, headers=viewer.headers)
        assert len((await resp.json())["items"]) == limit
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert sum("attachment_assessments" in q for q in queries) == 1
