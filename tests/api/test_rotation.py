"""POST /session/rotate: a session moves to a new BLE token; the old one
forwards for a short grace period, then never matches; de-duplication,
sockets, counters, secret and expiry carry over. Re-run on a Redis Cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config.settings import MAX_TOKEN_ROTATION_GRACE_SECONDS, Settings, SettingsError
from proximity_server.app import state as keys
from store.redis_keys import Keys
from tests.api.test_stats import get_stats
from tests.conftest import AppClient, MakeClient
from tests.helpers import attempt_match, bearer, new_token, open_session

SHORT_GRACE = 0.5
LONG_GRACE = 30.0  # the tests that must not see the grace run out
NOTHING = {"match": False, "shared_interests": [], "nudge_sent": False}
NUDGE = {"match": True, "shared_interests": ["tech"], "nudge_sent": True}
RECEIVE_TIMEOUT = 3.0


async def rotate(client: AppClient, own: str, secret: str, new: str) -> dict[str, Any]:
    resp = await client.post("/session/rotate", json={"own_token": own, "new_token": new}, headers=bearer(secret))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def past_grace() -> None:
    await asyncio.sleep(SHORT_GRACE + 0.2)


async def test_a_rotated_session_matches_under_its_new_token(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=LONG_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    a2 = new_token()
    await rotate(client, a, secret_a, a2)
    assert await attempt_match(client, b, secret_b, a2) == NUDGE
    # the same secret authenticates the new token
    assert (await attempt_match(client, a2, secret_a, b))["nudge_sent"] is False


async def test_secret_and_expiry_are_unchanged(client: AppClient, settings: Settings) -> None:
    token, secret = await open_session(client, ["devops"])
    again = await client.post("/session", json={"ble_token": token, "interests": ["devops"]}, headers=bearer(secret))
    expires_at = (await again.json())["expires_at"]
    new = new_token()
    assert await rotate(client, token, secret, new) == {"expires_at": expires_at}
    ttl = await client.app[keys.REDIS].pttl(Keys(settings.redis_prefix).session(new))
    assert 0 < ttl <= settings.session_ttl_seconds * 1000
    # the same secret refreshes the session under its new token, and opens its socket
    refreshed = await client.post("/session", json={"ble_token": new, "interests": ["devops"]}, headers=bearer(secret))
    assert refreshed.status == 200
    assert (await refreshed.json())["session_id"] == secret
    ws = await client.ws_connect(f"/ws/{new}", headers=bearer(secret))
    await ws.close()


async def test_the_old_token_forwards_during_the_grace_then_never_matches(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=SHORT_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    c, secret_c = await open_session(client, ["coding"])
    a2 = new_token()
    await rotate(client, a, secret_a, a2)
    # reports already on the air: others reporting the old token, the session itself using it
    assert await attempt_match(client, b, secret_b, a) == NUDGE
    assert await attempt_match(client, a, secret_a, c) == NUDGE
    await past_grace()
    assert await attempt_match(client, c, secret_c, a) == NOTHING
    assert await attempt_match(client, a, secret_a, b) == NOTHING
    # the new token is unaffected
    assert (await attempt_match(client, c, secret_c, a2))["match"] is True


async def test_a_later_token_is_gone_after_the_grace_the_first_stays_reserved(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=SHORT_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    a2, a3 = new_token(), new_token()
    await rotate(client, a, secret_a, a2)
    await rotate(client, a2, secret_a, a3)
    await past_grace()
    # a2 is gone: its secret no longer authenticates it, anyone may register it
    resp = await client.post("/match", json={"own_token": a2, "detected_token": a3}, headers=bearer(secret_a))
    assert resp.status == 401
    resp = await client.post("/session", json={"ble_token": a2, "interests": ["devops"]})
    assert resp.status == 201
    # the first token names the session's socket channel: nobody else gets it while the session lives
    resp = await client.post("/session", json={"ble_token": a, "interests": ["devops"]})
    assert resp.status == 409


async def test_rotating_twice_within_the_grace_forwards_through_both(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=LONG_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    a2, a3 = new_token(), new_token()
    await rotate(client, a, secret_a, a2)
    await rotate(client, a2, secret_a, a3)
    assert await attempt_match(client, b, secret_b, a) == NUDGE
    assert (await attempt_match(client, b, secret_b, a3))["nudge_sent"] is False
    # a session reporting its own old token is not a match
    assert await attempt_match(client, a3, secret_a, a2) == NOTHING


async def test_pair_de_duplication_carries_over(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=LONG_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    assert await attempt_match(client, a, secret_a, b) == NUDGE
    a2, b2 = new_token(), new_token()
    await rotate(client, a, secret_a, a2)
    assert (await attempt_match(client, b, secret_b, a2))["nudge_sent"] is False
    assert (await attempt_match(client, a2, secret_a, b))["nudge_sent"] is False
    await rotate(client, b, secret_b, b2)
    assert (await attempt_match(client, b2, secret_b, a2))["nudge_sent"] is False
    assert (await attempt_match(client, a2, secret_a, b2))["nudge_sent"] is False


async def test_existing_sessions_without_rotation_fields_keep_working(client: AppClient, settings: Settings) -> None:
    """A session written before rotation existed has no 'home': it publishes on its token's channel."""
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    k = Keys(settings.redis_prefix)
    assert await client.app[keys.REDIS].hget(k.session(a), "home") is None
    ws = await client.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    assert await attempt_match(client, b, secret_b, a) == NUDGE
    assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT))["type"] == "nudge"
    await ws.close()


async def test_the_socket_keeps_receiving_after_rotations(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=SHORT_GRACE)
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])
    c, _ = await open_session(client, ["coding"])
    ws = await client.ws_connect(f"/ws/{a}", headers=bearer(secret_a))
    a2, a3 = new_token(), new_token()
    await rotate(client, a, secret_a, a2)
    await attempt_match(client, b, secret_b, a2)
    assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT))["shared_interests"] == ["tech"]
    await rotate(client, a2, secret_a, a3)
    await past_grace()
    # a socket opened under the current token listens on the same session channel
    ws3 = await client.ws_connect(f"/ws/{a3}", headers=bearer(secret_a))
    await attempt_match(client, a3, secret_a, c)
    assert (await ws.receive_json(timeout=RECEIVE_TIMEOUT))["type"] == "nudge"
    assert (await ws3.receive_json(timeout=RECEIVE_TIMEOUT))["type"] == "nudge"
    assert not ws.closed
    await ws.close()
    await ws3.close()


async def test_a_refresh_after_rotation_keeps_the_first_token_reserved(
    make_client: MakeClient, settings: Settings
) -> None:
    client = await make_client(token_rotation_grace_seconds=SHORT_GRACE, session_ttl_seconds=2)
    a, secret_a = await open_session(client, ["devops"])
    a2 = new_token()
    await rotate(client, a, secret_a, a2)
    await asyncio.sleep(1.0)
    refreshed = await client.post("/session", json={"ble_token": a2, "interests": ["devops"]}, headers=bearer(secret_a))
    assert refreshed.status == 200
    k = Keys(settings.redis_prefix)
    redis = client.app[keys.REDIS]
    assert await redis.pttl(k.session(a)) > 1500  # extended with the session, not left to run out
    assert await redis.pttl(k.session(a2)) > 1500


async def test_a_rotation_is_not_a_new_session(make_client: MakeClient) -> None:
    client = await make_client(token_rotation_grace_seconds=LONG_GRACE)
    a, secret_a = await open_session(client, ["devops", "hardstyle"])
    await open_session(client, ["coding"])
    before = await get_stats(client)
    assert before["total_sessions_today"] == 2 and before["active_sessions_now"] == 2
    await rotate(client, a, secret_a, new_token())
    assert await get_stats(client) == before
    await client.app[keys.FLUSHER].flush_once()
    assert await get_stats(client) == before


async def test_rotation_validation(client: AppClient) -> None:
    a, secret_a = await open_session(client, ["devops"])
    b, secret_b = await open_session(client, ["sre"])

    async def post(body: object, headers: dict[str, str]) -> tuple[int, str, Any]:
        resp = await client.post("/session/rotate", json=body, headers=headers)
        return resp.status, (await resp.json())["error"]["code"], resp

    fresh = {"own_token": a, "new_token": new_token()}
    for headers in ({}, bearer(secret_b), bearer("wrong-" + "x" * 30)):
        status, code, resp = await post(fresh, headers)
        assert (status, code) == (401, "unauthorized"), headers
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await post({"own_token": new_token(), "new_token": new_token()}, bearer(secret_a)))[:2] == (
        401,
        "unauthorized",
    )
    assert (await post({"own_token": a, "new_token": b}, bearer(secret_a)))[:2] == (409, "conflict")
    assert (await post({"own_token": a, "new_token": a}, bearer(secret_a)))[:2] == (409, "conflict")
    for body in (
        {"own_token": a, "new_token": "short"},
        {"own_token": a, "new_token": "has space in it"},
        {"own_token": a, "new_token": 12345678},
        {"own_token": "bad token!", "new_token": new_token()},
    ):
        assert (await post(body, bearer(secret_a)))[:2] == (400, "invalid_field"), body
    assert (await post({"own_token": a}, bearer(secret_a)))[:2] == (400, "invalid_field")
    assert (await post({**fresh, "extra": 1}, bearer(secret_a)))[:2] == (400, "unknown_field")
    # nothing moved: a still matches as before, b was not touched
    assert await attempt_match(client, a, secret_a, b) == NUDGE
    # once rotated, the old token cannot be rotated again (the phone rotates its current one)
    await rotate(client, a, secret_a, fresh["new_token"])
    assert (await post({"own_token": a, "new_token": new_token()}, bearer(secret_a)))[:2] == (401, "unauthorized")


def test_the_grace_setting() -> None:
    assert Settings.from_env({}).token_rotation_grace_seconds <= MAX_TOKEN_ROTATION_GRACE_SECONDS
    assert Settings.from_env({"TOKEN_ROTATION_GRACE_SECONDS": "2.5"}).token_rotation_grace_seconds == 2.5
    for bad in ("61", "-1", "soon"):
        with pytest.raises(SettingsError):
            Settings.from_env({"TOKEN_ROTATION_GRACE_SECONDS": bad})
