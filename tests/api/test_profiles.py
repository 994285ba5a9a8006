"""GET /me, PUT/PATCH /me/profile, GET /profiles/{user_id}."""

from __future__ import annotations

import asyncpg
import pytest

from config.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import (
    ACCOUNT_SETTINGS,
    User,
    birthdate_for_age,
    profile_body,
    put_profile,
    sign_up,
    with_profile,
)


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def test_me_without_profile(client: AppClient) -> None:
    user = await sign_up(client)
    resp = await client.get("/me", headers=user.headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["user_id"] == user.user_id
    assert body["email"].endswith("@example.com")
    assert body["created_at"]
    assert body["profile"] is None


async def test_me_requires_a_token(client: AppClient) -> None:
    assert (await client.get("/me")).status == 401
    assert (await client.put("/me/profile", json=profile_body())).status == 401


async def test_put_then_get_profile(client: AppClient) -> None:
    user = await sign_up(client)
    profile = await put_profile(client, user, location={"lat": 52.52, "lon": 13.405})
    assert profile["display_name"] == "Alex"
    assert profile["age"] == 30
    assert profile["interests"] == ["devops", "hard style"]  # normalised
    assert profile["location"] == {"lat": 52.52, "lon": 13.405}
    body = await (await client.get("/me", headers=user.headers)).json()
    assert body["profile"]["gender"] == "woman"
    assert body["profile"]["interested_in"] == ["man"]


async def test_put_replaces_everything(client: AppClient) -> None:
    user = await sign_up(client)
    await put_profile(client, user, location={"lat": 1.0, "lon": 2.0})
    replaced = await put_profile(client, user, bio="new")  # no location, no interests given below
    assert replaced["bio"] == "new"
    assert replaced["location"] is None
    body = {k: v for k, v in profile_body().items() if k not in ("bio", "interests")}
    resp = await client.put("/me/profile", json=body, headers=user.headers)
    assert resp.status == 200
    after = await resp.json()
    assert after["bio"] == "" and after["interests"] == []


async def test_patch_changes_only_given_fields(client: AppClient) -> None:
    user = await sign_up(client)
    await put_profile(client, user)
    resp = await client.patch("/me/profile", json={"bio": "patched"}, headers=user.headers)
    assert resp.status == 200
    body = await resp.json()
    assert body["bio"] == "patched" and body["display_name"] == "Alex" and body["interests"] == ["devops", "hard style"]


async def test_patch_without_profile_needs_required_fields(client: AppClient) -> None:
    user = await sign_up(client)
    resp = await client.patch("/me/profile", json={"bio": "x"}, headers=user.headers)
    assert resp.status == 400
    assert "display_name" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    "changes",
    [
        {"display_name": ""},
        {"display_name": "x" * 51},
        {"display_name": 5},
        {"birthdate": birthdate_for_age(17)},
        {"birthdate": "1990-13-01"},
        {"birthdate": "01/02/1990"},
        {"gender": "robot"},
        {"interested_in": []},
        {"interested_in": ["woman", "cat"]},
        {"interested_in": "woman"},
        {"bio": "x" * 501},
        {"interests": [f"interest {i}" for i in range(21)]},
        {"interests": "music"},
        {"location": {"lat": 91, "lon": 0}},
        {"location": {"lat": 0, "lon": -181}},
        {"location": {"lat": "1", "lon": 0}},
        {"location": {"lat": True, "lon": 0}},
        {"location": {"lat": 1}},
        {"location": [1, 2]},
        {"favourite_colour": "blue"},
    ],
)
async def test_invalid_profile_fields(client: AppClient, changes: dict[str, object]) -> None:
    user = await sign_up(client)
    resp = await client.put("/me/profile", json=profile_body(**changes), headers=user.headers)
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] in ("invalid_field", "unknown_field")


async def test_patch_unknown_field_and_bad_json(client: AppClient) -> None:
    user = await sign_up(client)
    await put_profile(client, user)
    assert (await client.patch("/me/profile", json={"email": "x@y.z"}, headers=user.headers)).status == 400
    resp = await client.patch("/me/profile", data=b"{", headers={**user.headers, "Content-Type": "application/json"})
    assert resp.status == 400


async def test_public_profile_hides_private_fields(client: AppClient) -> None:
    alice = await with_profile(client, location={"lat": 52.52, "lon": 13.405})
    bob = await with_profile(client, display_name="Bob", gender="man", location={"lat": 52.52, "lon": 13.505})
    resp = await client.get(f"/profiles/{alice.user_id}", headers=bob.headers)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {
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
    assert body["age"] == 30
    assert body["distance_km"] == 7  # 0.1° of longitude at 52.5°N ≈ 6.8 km
    text = await resp.text()
    for secret in ("52.52", "13.405", "birthdate", "email", "interested_in", "location"):
        assert secret not in text


async def test_distance_is_at_least_one_km_and_null_without_locations(client: AppClient) -> None:
    alice = await with_profile(client, location={"lat": 10.0, "lon": 10.0})
    bob = await with_profile(client, gender="man", location={"lat": 10.0001, "lon": 10.0})
    carol = await with_profile(client, gender="man")
    assert (await (await client.get(f"/profiles/{alice.user_id}", headers=bob.headers)).json())["distance_km"] == 1
    assert (await (await client.get(f"/profiles/{alice.user_id}", headers=carol.headers)).json())["distance_km"] is None


async def test_unknown_malformed_and_deleted_profiles_are_404(client: AppClient, pg: asyncpg.Connection) -> None:
    viewer = await with_profile(client)
    gone = await with_profile(client, gender="man")
    no_profile = await sign_up(client)
    for user_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000", no_profile.user_id):
        resp = await client.get(f"/profiles/{user_id}", headers=viewer.headers)
        assert resp.status == 404, user_id
        assert (await resp.json())["error"]["code"] == "not_found"
    assert (await client.get(f"/profiles/{gone.user_id}", headers=viewer.headers)).status == 200
    await pg.execute("UPDATE users SET deleted_at = now() WHERE id = $1", gone.user_id)
    assert (await client.get(f"/profiles/{gone.user_id}", headers=viewer.headers)).status == 404


async def test_one_user_cannot_edit_another(client: AppClient) -> None:
    alice = await with_profile(client)
    bob = await with_profile(client, display_name="Bob", gender="man")
    await client.patch("/me/profile", json={"bio": "bob's bio"}, headers=bob.headers)
    body = await (await client.get("/me", headers=alice.headers)).json()
    assert body["profile"]["bio"] == "hello"
    assert body["profile"]["display_name"] == "Alex"


async def profile_status(client: AppClient, viewer: User, whom: User) -> int:
    return (await client.get(f"/profiles/{whom.user_id}", headers=viewer.headers)).status


@pytest.mark.parametrize("blocker_index", [0, 1])
async def test_a_block_hides_both_profiles_until_lifted(client: AppClient, blocker_index: int) -> None:
    pair = [await with_profile(client, display_name="Alice"), await with_profile(client, display_name="Bob")]
    blocker, blocked = pair[blocker_index], pair[1 - blocker_index]
    bystander = await with_profile(client, display_name="Carol")
    assert await profile_status(client, blocker, blocked) == 200
    resp = await client.post("/blocks", json={"user_id": blocked.user_id}, headers=blocker.headers)
    assert resp.status == 204, await resp.text()
    assert await profile_status(client, blocker, blocked) == 404
    resp = await client.get(f"/profiles/{blocker.user_id}", headers=blocked.headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    assert await profile_status(client, bystander, blocker) == 200  # only the pair is affected
    assert await profile_status(client, bystander, blocked) == 200
    resp = await client.delete(f"/blocks/{blocked.user_id}", headers=blocker.headers)
    assert resp.status == 204
    assert await profile_status(client, blocker, blocked) == 200
    assert await profile_status(client, blocked, blocker) == 200


async def test_public_profile_carries_compatibility(client: AppClient) -> None:
    alice = await with_profile(client, interests=["jazz"], location={"lat": 52.52, "lon": 13.405})
    bob = await with_profile(client, gender="man", interests=["jazz"], location={"lat": 52.52, "lon": 13.505})
    body = await (await client.get(f"/profiles/{alice.user_id}", headers=bob.headers)).json()
    assert set(body["compatibility"]) == {"score", "reasons"}
    assert 0 <= body["compatibility"]["score"] <= 100
    assert body["compatibility"]["reasons"] == ["1 shared interest: jazz", "7 km away"]
    # The same pair scores the same either way round.
    back = await (await client.get(f"/profiles/{bob.user_id}", headers=alice.headers)).json()
    assert back["compatibility"]["score"] == body["compatibility"]["score"]
    own = await (await client.get(f"/profiles/{alice.user_id}", headers=alice.headers)).json()
    assert own["compatibility"] is None
