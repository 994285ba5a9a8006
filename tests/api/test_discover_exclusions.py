"""Discovery leaves out people the viewer liked or passed, and blocks either way;
lists of matches show the other person's display name."""

from __future__ import annotations

import pytest

from config.settings import Settings
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, User, with_profile


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def discover(client: AppClient, user: User) -> list[str]:
    resp = await client.get("/discover", headers=user.headers)
    assert resp.status == 200, await resp.text()
    return [item["user_id"] for item in (await resp.json())["items"]]


async def like(client: AppClient, who: User, whom: User, action: str = "like") -> dict[str, object]:
    resp = await client.post("/likes", json={"user_id": whom.user_id, "action": action}, headers=who.headers)
    assert resp.status == 200, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def test_liked_passed_and_blocked_people_are_not_discovered(client: AppClient) -> None:
    viewer = await with_profile(client, gender="woman", interested_in=["man"])
    liked, passed, blocked, blocker, other = [
        await with_profile(client, gender="man", interested_in=["woman"]) for _ in range(5)
    ]
    assert await discover(client, viewer) == [u.user_id for u in (liked, passed, blocked, blocker, other)]
    await like(client, viewer, liked)
    await like(client, viewer, passed, "pass")
    assert (await client.post("/blocks", json={"user_id": blocked.user_id}, headers=viewer.headers)).status == 204
    assert (await client.post("/blocks", json={"user_id": viewer.user_id}, headers=blocker.headers)).status == 204
    assert await discover(client, viewer) == [other.user_id]
    # Being liked does not hide you from the one who liked; blocks hide both ways.
    assert viewer.user_id in await discover(client, liked)
    assert viewer.user_id not in await discover(client, blocked)
    assert viewer.user_id not in await discover(client, blocker)


async def test_matches_and_conversations_show_the_display_name(client: AppClient) -> None:
    a = await with_profile(client, gender="woman", interested_in=["man"], display_name="Ada")
    b = await with_profile(client, gender="man", interested_in=["woman"], display_name="Bob")
    await like(client, a, b)
    await like(client, b, a)
    [item] = (await (await client.get("/matches", headers=a.headers)).json())["items"]
    assert item["user"] == {"user_id": b.user_id, "display_name": "Bob", "age": 30, "photo": None}
    [item] = (await (await client.get("/conversations", headers=b.headers)).json())["items"]
    assert item["user"] == {"user_id": a.user_id, "display_name": "Ada", "age": 30, "photo": None}
