"""POST /session: creation, refresh, the secret rule, and bad input."""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

from config.settings import Settings
from store.redis_keys import Keys
from tests.conftest import AppClient
from tests.helpers import bearer, new_token, open_session


async def test_create_session_returns_secret_and_expiry(
    client: AppClient, redis: aioredis.Redis, settings: Settings
) -> None:
    token = new_token()
    resp = await client.post("/session", json={"ble_token": token, "interests": [" DevOps ", "hardstyle", "devops"]})
    assert resp.status == 201
    body = await resp.json()
    assert set(body) == {"session_id", "expires_at"}
    assert len(body["session_id"]) >= 22  # at least 128 bits, url-safe base64
    expires = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    remaining = (expires - dt.datetime.now(dt.UTC)).total_seconds()
    assert settings.session_ttl_seconds - 5 < remaining <= settings.session_ttl_seconds + 1

    stored = await redis.hgetall(Keys(settings.redis_prefix).session(token))
    assert stored["interest_categories"] == "music,tech"
    assert len(stored["interests_hash"]) == 64
    assert body["session_id"] not in stored.values()  # only its hash is kept
    assert "devops" not in str(stored)  # raw interests are not stored
    ttl = await redis.ttl(Keys(settings.redis_prefix).session(token))
    assert settings.session_ttl_seconds - 5 < ttl <= settings.session_ttl_seconds


async def test_live_token_conflicts_without_its_secret(client: AppClient) -> None:
    token, _ = await open_session(client, ["devops"])
    again = await client.post("/session", json={"ble_token": token, "interests": ["devops"]})
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "conflict"
    wrong = await client.post(
        "/session", json={"ble_token": token, "interests": ["devops"]}, headers=bearer("nope" * 8)
    )
    assert wrong.status == 409


async def test_refresh_with_secret_keeps_id_and_extends_ttl(
    client: AppClient, redis: aioredis.Redis, settings: Settings
) -> None:
    token, secret = await open_session(client, ["devops"])
    key = Keys(settings.redis_prefix).session(token)
    await redis.expire(key, 100)
    resp = await client.post("/session", json={"ble_token": token, "interests": ["hiking"]}, headers=bearer(secret))
    assert resp.status == 200
    body = await resp.json()
    assert body["session_id"] == secret
    assert await redis.ttl(key) > 100
    assert await redis.hget(key, "interest_categories") == "outdoors"


async def test_unknown_interests_map_to_other(client: AppClient, redis: aioredis.Redis, settings: Settings) -> None:
    token, _ = await open_session(client, ["zzz-not-an-interest"])
    assert await redis.hget(Keys(settings.redis_prefix).session(token), "interest_categories") == "other"


async def test_bad_input_is_refused_with_json_errors(client: AppClient) -> None:
    good = {"ble_token": new_token(), "interests": ["devops"]}
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
        ({"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
        (
            {"data": b"ble_token=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {"ble_token": new_token()}}, 400, "invalid_field"),
        ({"json": {**good, "extra": 1}}, 400, "unknown_field"),
        ({"json": {**good, "ble_token": "short"}}, 400, "invalid_field"),
        ({"json": {**good, "ble_token": "bad token with spaces"}}, 400, "invalid_field"),
        ({"json": {**good, "ble_token": 12345678}}, 400, "invalid_field"),
        ({"json": {**good, "ble_token": "x" * 65}}, 400, "invalid_field"),
        ({"json": {**good, "interests": []}}, 400, "invalid_field"),
        ({"json": {**good, "interests": "devops"}}, 400, "invalid_field"),
        ({"json": {**good, "interests": [1, 2]}}, 400, "invalid_field"),
        ({"json": {**good, "interests": [f"i{n}" for n in range(21)]}}, 400, "invalid_field"),
        ({"json": {**good, "interests": ["x" * 65]}}, 400, "invalid_field"),
        ({"json": {**good, "interests": ["  "]}}, 400, "invalid_field"),
        ({"json": {**good, "interests": ["x" * 70000]}}, 413, "too_large"),
    ]
    for kwargs, status, code in cases:
        resp = await client.post("/session", **kwargs)  # type: ignore[arg-type]
        assert resp.status == status, (kwargs, await resp.text())
        body = await resp.json()
        assert body["error"]["code"] == code, (kwargs, body)
        assert body["error"]["message"]


async def test_unknown_route_and_method_get_json_errors(client: AppClient) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/session")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_responses_carry_request_id_and_security_headers(client: AppClient) -> None:
    resp = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp = await client.get("/livez", headers={"X-Request-ID": "bad id\twith junk"})
    assert resp.headers["X-Request-ID"] != "bad id\twith junk"
