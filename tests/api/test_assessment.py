"""The attachment assessment: questions, answers, result, once-a-day retake."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from config.settings import Settings
from proximity_server.app import state as keys
from proximity_server.features.assessment import ITEM_IDS, REVERSED
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, sign_up


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


def answers(anxiety: int, avoidance: int) -> dict[str, int]:
    return {
        i: (8 - v if i in REVERSED else v)
        for i in ITEM_IDS
        for v in [anxiety if i.startswith("anx_") else avoidance]
    }


async def test_questions_answers_and_result(client: AppClient) -> None:
    user = await sign_up(client)
    resp = await client.get("/me/assessment", headers=user.headers)
    assert resp.status == 200
    body = await resp.json()
    assert [item["id"] for item in body["items"]] == list(ITEM_IDS) and len(ITEM_IDS) == 18
    assert body["result"] is None
    resp = await client.put("/me/assessment", json={"answers": answers(6, 2)}, headers=user.headers)
    assert resp.status == 200, await resp.text()
    result = await (await client.get("/me/assessment/result", headers=user.headers)).json()
    assert (result["anxiety"], result["avoidance"], result["style"]) == (6, 2, "anxious")
    assert result["insights"]
    # The statements come with the current result, so a client needs no 404 to learn it was taken.
    body = await (await client.get("/me/assessment", headers=user.headers)).json()
    assert body["result"] == result


@pytest.mark.parametrize(
    "body",
    [
        {"answers": {i: 4 for i in ITEM_IDS[1:]}},
        {"answers": {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[3]: 9}},
        {"answers": {**dict.fromkeys(ITEM_IDS, 4), ITEM_IDS[3]: "4"}},
        {"answers": "all fours"},
    ],
)
async def test_incomplete_or_out_of_range_is_400(client: AppClient, body: dict[str, object]) -> None:
    user = await sign_up(client)
    resp = await client.put("/me/assessment", json=body, headers=user.headers)
    assert resp.status == 400
    assert (await client.get("/me/assessment/result", headers=user.headers)).status == 404


async def test_only_the_owner_reads_a_result(client: AppClient) -> None:
    owner, other = await sign_up(client), await sign_up(client)
    await client.put("/me/assessment", json={"answers": answers(2, 2)}, headers=owner.headers)
    assert (await client.get("/me/assessment/result", headers=other.headers)).status == 404
    assert (await client.get("/me/assessment/result")).status == 401


async def test_retake_at_most_once_a_day(client: AppClient) -> None:
    user = await sign_up(client)
    assert (await client.put("/me/assessment", json={"answers": answers(2, 2)}, headers=user.headers)).status == 200
    resp = await client.put("/me/assessment", json={"answers": answers(6, 6)}, headers=user.headers)
    assert resp.status == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 86_400
    # A day later the retake is accepted.
    later = dataclasses.replace(
        client.app[keys.ASSESSMENT], clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=1, seconds=1)
    )
    result = await later.submit(user.user_id, {"answers": answers(6, 6)})
    assert result["style"] == "fearful_avoidant"
