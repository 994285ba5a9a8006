"""Two signed-in people who blocked each other are never nudged by proximity."""

from __future__ import annotations

import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES
from tests.chat_helpers import Person, person
from tests.conftest import AppClient, MakeClient
from tests.helpers import attempt_match, new_token


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def user_session(client: AppClient, who: Person) -> tuple[str, str]:
    token = new_token()
    resp = await client.post("/session", json={"ble_token": token, "interests": ["devops"]}, headers=who.auth)
    assert resp.status == 201
    return token, (await resp.json())["session_id"]


async def test_block_hides_the_pair_from_proximity_and_unblock_restores_it(client: AppClient) -> None:
    a, b = await person(client), await person(client)
    ta, sa = await user_session(client, a)
    tb, sb = await user_session(client, b)
    assert (await client.post("/blocks", json={"user_id": a.user_id}, headers=b.auth)).status == 204
    nothing = {"match": False, "shared_interests": [], "nudge_sent": False}
    assert await attempt_match(client, ta, sa, tb) == nothing
    assert await attempt_match(client, tb, sb, ta) == nothing
    # an anonymous session (no user) is unaffected
    anon, anon_secret = await user_session(client, await person(client))
    assert (await attempt_match(client, anon, anon_secret, ta))["nudge_sent"] is True
    assert (await client.delete(f"/blocks/{a.user_id}", headers=b.auth)).status == 204
    assert (await attempt_match(client, ta, sa, tb))["nudge_sent"] is True
