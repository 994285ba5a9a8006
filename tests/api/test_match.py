"""POST /match: the secret rule, category intersection, pair de-duplication."""

from __future__ import annotations

from config.settings import Settings
from store.redis_keys import Keys
from tests.conftest import AppClient
from tests.helpers import attempt_match, bearer, new_token, open_session


async def test_match_needs_the_own_tokens_secret(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["devops"])
    body = {"own_token": a, "detected_token": b}
    for headers in ({}, bearer("wrong-secret-" + "x" * 20), bearer(secret_b), {"Authorization": "Basic abc"}):
        resp = await client.post("/match", json=body, headers=headers)
        assert resp.status == 401, headers
        assert (await resp.json())["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    # a token with no live session cannot authenticate either
    resp = await client.post("/match", json={"own_token": new_token(), "detected_token": b}, headers=bearer(secret_a))
    assert resp.status == 401


async def test_shared_categories_are_sorted_labels(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["hardstyle", "devops", "philosophy", "knitting-zzz"])
    b, _ = await open_session(client, ["coding", "techno", "cooking"])
    assert await attempt_match(client, a, secret_a, b) == {
        "match": True,
        "shared_interests": ["music", "tech"],
        "nudge_sent": True,
    }


async def test_no_match_cases(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, _ = await open_session(client, ["hiking"])
    u1, secret_u1 = await open_session(client, ["zzz unknown one"])
    u2, _ = await open_session(client, ["zzz unknown two"])
    nothing = {"match": False, "shared_interests": [], "nudge_sent": False}
    assert await attempt_match(client, a, secret_a, b) == nothing  # nothing shared
    assert await attempt_match(client, a, secret_a, a) == nothing  # self
    assert await attempt_match(client, a, secret_a, new_token()) == nothing  # no live session
    assert await attempt_match(client, u1, secret_u1, u2) == nothing  # "other" never matches


async def test_pair_is_nudged_once_per_session_lifetime(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    first = await attempt_match(client, a, secret_a, b)
    assert first == {"match": True, "shared_interests": ["tech"], "nudge_sent": True}
    # both phones report each other: still a match, but no second nudge
    assert (await attempt_match(client, b, secret_b, a))["nudge_sent"] is False
    assert (await attempt_match(client, a, secret_a, b))["nudge_sent"] is False
    # refreshing a session keeps its lifetime's de-duplication
    resp = await client.post("/session", json={"ble_token": a, "interests": ["devops"]}, headers=bearer(secret_a))
    assert resp.status == 200
    assert (await attempt_match(client, a, secret_a, b))["nudge_sent"] is False


async def test_new_session_for_same_token_can_be_nudged_again(
    client: AppClient, redis: object, settings: Settings
) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, _ = await open_session(client, ["devops"])
    assert (await attempt_match(client, a, secret_a, b))["nudge_sent"] is True
    await redis.delete(Keys(settings.redis_prefix).session(a))  # type: ignore[attr-defined]  # session expired
    a, secret_a = await open_session(client, ["devops"], token=a)
    assert (await attempt_match(client, a, secret_a, b))["nudge_sent"] is True


async def test_match_bad_input(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    for body in ({"own_token": a}, {"own_token": a, "detected_token": 5}, {"own_token": a, "detected_token": "a b"}):
        resp = await client.post("/match", json=body, headers=bearer(secret_a))
        assert resp.status == 400, body
        assert "error" in await resp.json()
