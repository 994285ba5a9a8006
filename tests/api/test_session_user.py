"""POST /session with an access token: the session remembers the user, and
the user's channel receives the session's nudges."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from config.settings import Settings
from store.redis_keys import Keys
from tests.auth_helpers import ACCOUNT_OVERRIDES, access, register
from tests.conftest import AppClient, MakeClient
from tests.helpers import attempt_match, new_token, open_session


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def test_session_created_with_access_token_remembers_the_user(
    client: AppClient, redis: aioredis.Redis, settings: Settings
) -> None:
    user = await register(client)
    token = new_token()
    resp = await client.post("/session", json={"ble_token": token, "interests": ["devops"]}, headers=access(user))
    assert resp.status == 201
    secret = (await resp.json())["session_id"]
    assert "." not in secret
    assert await redis.hget(Keys(settings.redis_prefix).session(token), "user_id") == user["user_id"]

    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{settings.redis_prefix}ev:user:{user['user_id']}")
    assert (await pubsub.get_message(timeout=1.0))["type"] == "subscribe"  # type: ignore[index]
    other, _ = await open_session(client, ["coding"])
    assert (await attempt_match(client, token, secret, other))["nudge_sent"] is True
    message = None
    for _ in range(20):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message:
            break
    assert message is not None and message["data"] == "nudge|tech"
    await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_a_bad_access_token_is_refused(client: AppClient) -> None:
    forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    resp = await client.post(
        "/session",
        json={"ble_token": new_token(), "interests": ["devops"]},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert resp.status == 401
