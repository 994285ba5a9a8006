"""The other person on match and conversation cards (GET /matches, GET
/conversations): display name, age and first photo, read in the same query
as the page (no query per row)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from config.settings import Settings
from store.conversations import ConversationStore
from store.likes import LikeStore
from tests.conftest import AppClient
from tests.profile_helpers import ACCOUNT_SETTINGS, User, birthdate_for_age, put_profile, sign_up, upload


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


async def match(client: AppClient, x: User, y: User) -> dict[str, Any]:
    for who, whom in ((x, y), (y, x)):
        resp = await client.post("/likes", json={"user_id": whom.user_id, "action": "like"}, headers=who.headers)
        assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert body["matched"], body
    return body


async def cards(client: AppClient, viewer: User, path: str) -> dict[str, dict[str, Any]]:
    """The ``user`` of each item of a list, by user id."""
    resp = await client.get(path, headers=viewer.headers)
    assert resp.status == 200, await resp.text()
    return {item["user"]["user_id"]: item["user"] for item in (await resp.json())["items"]}


def photo_ref(photo_id: str) -> dict[str, str]:
    return {"photo_id": photo_id, "url": f"/photos/{photo_id}", "thumb_url": f"/photos/{photo_id}/thumb"}


def unsigned(photo: dict[str, str] | None) -> dict[str, str] | None:
    """A card's photo with its URLs' signature (``?exp=…&sig=…``) checked and taken off."""
    if photo is None:
        return None
    out = dict(photo)
    for field in ("url", "thumb_url"):
        path, _, query = photo[field].partition("?")
        assert sorted(part.split("=", 1)[0] for part in query.split("&")) == ["exp", "sig"], photo[field]
        out[field] = path
    return out


@pytest.mark.parametrize("path", ["/matches", "/conversations"])
async def test_cards_show_name_age_and_first_photo(client: AppClient, path: str) -> None:
    viewer, bea = await sign_up(client), await sign_up(client)
    await put_profile(client, bea, display_name="Bea", birthdate=birthdate_for_age(31))
    first, second = (await upload(client, bea))["photo_id"], (await upload(client, bea))["photo_id"]
    resp = await client.put("/me/photos/order", json=[second, first], headers=bea.headers)
    assert resp.status == 200, await resp.text()
    await match(client, viewer, bea)

    card = (await cards(client, viewer, path))[bea.user_id]
    shown = {key: card[key] for key in ("user_id", "display_name", "age")} | {"photo": unsigned(card["photo"])}
    assert shown == {"user_id": bea.user_id, "display_name": "Bea", "age": 31, "photo": photo_ref(second)}
    thumb = await client.get(card["photo"]["thumb_url"])  # the signed URL needs no bearer token
    assert thumb.status == 200 and thumb.content_type.startswith("image/")

    # The viewer has neither profile nor photo: null age, name and photo.
    back = (await cards(client, bea, path))[viewer.user_id]
    assert (back["display_name"], back["age"], back["photo"]) == (None, None, None)


@pytest.mark.parametrize("path", ["/matches", "/conversations"])
async def test_card_photo_is_null_with_a_profile_but_no_photo(client: AppClient, path: str) -> None:
    viewer, cam = await sign_up(client), await sign_up(client)
    await put_profile(client, cam, display_name="Cam", birthdate=birthdate_for_age(45))
    await match(client, viewer, cam)
    card = (await cards(client, viewer, path))[cam.user_id]
    assert (card["display_name"], card["age"], card["photo"]) == ("Cam", 45, None)


class QueryLog:
    """Every statement sent on the connections of one pool (asyncpg's query
    logger). The pool's own reset on release is replaced by a no-op so that
    only the store's statements are counted."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda logged: self.queries.append(logged.query))

    async def reset(self, conn: asyncpg.Connection) -> None:
        return None


@pytest.fixture
async def logged_pool(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, QueryLog]]:
    log = QueryLog()
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=1,
        server_settings={"search_path": settings.db_schema},
        init=log.init,
        reset=log.reset,
    )
    assert pool is not None
    yield pool, log
    await pool.close()


async def test_a_page_of_cards_is_one_query_whatever_its_size(
    client: AppClient, logged_pool: tuple[asyncpg.Pool, QueryLog]
) -> None:
    """N matches with profiles and photos: the match list and the inbox are
    each one statement, for one row as for N (no query per row)."""
    viewer = await sign_up(client)
    others = [await sign_up(client) for _ in range(4)]
    for i, other in enumerate(others):
        await put_profile(client, other, display_name=f"Person {i}", birthdate=birthdate_for_age(20 + i))
        await upload(client, other)
        await match(client, viewer, other)
    pool, log = logged_pool
    likes, conversations = LikeStore(pool), ConversationStore(pool)
    for limit in (1, len(others)):
        log.queries.clear()
        matches = await likes.matches_page(viewer.user_id, limit, None)
        assert len(matches) == limit and all(m.other.photo_id and m.other.birthdate for m in matches)
        assert len(log.queries) == 1, log.queries
        log.queries.clear()
        inbox = await conversations.page(viewer.user_id, limit, None)
        assert len(inbox) == limit and all(c.other.photo_id and c.other.display_name for c in inbox)
        assert len(log.queries) == 1, log.queries
