"""Rate limits: shared by every process through Redis; 429 with Retry-After;
X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from config.settings import Settings
from proximity_server.features.rate_limit import WINDOW_MS, TrustedProxies, current_window
from tests.auth_helpers import (
    ACCOUNT_OVERRIDES,
    TEST_PASSWORD,
    WHOAMI_PATH,
    app_with_probe,
    bearer,
    fresh_rate_window,
    new_email,
    register,
)
from tests.conftest import AppClient

MakeAuthClient = Callable[..., Awaitable[AppClient]]
LIMIT = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**{**ACCOUNT_OVERRIDES, "rate_limit_auth_per_minute": LIMIT})


@pytest.fixture
def make_auth_client(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], settings: Settings
) -> MakeAuthClient:
    async def factory(**overrides: object) -> AppClient:
        return await aiohttp_client(app_with_probe(settings.with_overrides(**overrides)))

    return factory


async def _login(client: AppClient, email: str, headers: dict[str, str] | None = None) -> Any:
    return await client.post("/auth/login", json={"email": email, "password": TEST_PASSWORD}, headers=headers)


def _assert_limited(resp: Any) -> None:
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 60


async def test_auth_limit_per_ip_is_shared_by_two_instances(make_auth_client: MakeAuthClient) -> None:
    one, two = await make_auth_client(), await make_auth_client()
    await fresh_rate_window()
    statuses = []
    for i in range(LIMIT):
        resp = await _login(one if i % 2 else two, new_email())
        statuses.append(resp.status)
    assert statuses == [401] * LIMIT
    for client in (one, two):
        resp = await _login(client, new_email())
        _assert_limited(resp)
        body = await resp.json()
        assert body["error"]["code"] == "rate_limited"
    # Every /auth/* endpoint counts against the same budget.
    _assert_limited(await one.post("/auth/refresh", json={"refresh_token": "x" * 43}))
    _assert_limited(await two.post("/auth/register", json={"email": new_email(), "password": TEST_PASSWORD}))


async def test_auth_limit_per_email(make_auth_client: MakeAuthClient) -> None:
    client = await make_auth_client(trusted_proxies=("127.0.0.1/32", "::1/128"))
    email = new_email()
    await fresh_rate_window()
    for i in range(LIMIT):
        resp = await _login(client, email, {"X-Forwarded-For": f"198.51.100.{i}"})
        assert resp.status == 401
    # A new address, the same email: still limited.
    _assert_limited(await _login(client, email.upper(), {"X-Forwarded-For": "198.51.100.200"}))
    # The new address itself may still try other emails.
    assert (await _login(client, new_email(), {"X-Forwarded-For": "198.51.100.200"})).status == 401


async def test_forwarded_for_is_ignored_from_untrusted_peers(make_auth_client: MakeAuthClient) -> None:
    client = await make_auth_client()  # no trusted proxies
    await fresh_rate_window()
    for i in range(LIMIT):
        assert (await _login(client, new_email(), {"X-Forwarded-For": f"203.0.113.{i}"})).status == 401
    _assert_limited(await _login(client, new_email(), {"X-Forwarded-For": "203.0.113.99"}))


async def test_forwarded_for_is_honoured_from_trusted_proxies(make_auth_client: MakeAuthClient) -> None:
    client = await make_auth_client(trusted_proxies=("127.0.0.0/8", "::1/128"))
    await fresh_rate_window()
    for i in range(LIMIT * 3):
        resp = await _login(client, new_email(), {"X-Forwarded-For": f"203.0.113.{i}"})
        assert resp.status == 401  # each client address has its own budget
    for _ in range(LIMIT):
        assert (await _login(client, new_email(), {"X-Forwarded-For": "203.0.113.50"})).status == 401
    _assert_limited(await _login(client, new_email(), {"X-Forwarded-For": "203.0.113.50"}))
    # A spoofed left-most entry does not help: the proxy appended the real address.
    headers = {"X-Forwarded-For": "1.2.3.4, 203.0.113.50"}
    _assert_limited(await _login(client, new_email(), headers))


async def test_api_limit_per_user_is_shared_by_two_instances(make_auth_client: MakeAuthClient) -> None:
    one = await make_auth_client(rate_limit_api_per_minute=LIMIT, rate_limit_auth_per_minute=100)
    two = await make_auth_client(rate_limit_api_per_minute=LIMIT, rate_limit_auth_per_minute=100)
    await fresh_rate_window()
    user, other = await register(one), await register(one)
    for i in range(LIMIT):
        assert (await (one if i % 2 else two).get(WHOAMI_PATH, headers=bearer(user["access_token"]))).status == 200
    for client in (one, two):
        resp = await client.get(WHOAMI_PATH, headers=bearer(user["access_token"]))
        _assert_limited(resp)
        assert (await resp.json())["error"]["code"] == "rate_limited"
    assert (await two.get(WHOAMI_PATH, headers=bearer(other["access_token"]))).status == 200


async def test_api_counter_lives_one_window(
    make_auth_client: MakeAuthClient, redis: aioredis.Redis, settings: Settings
) -> None:
    """The counter the access check increments expires with its window (set on the first hit, kept after)."""
    client = await make_auth_client(rate_limit_api_per_minute=100, rate_limit_auth_per_minute=100)
    await fresh_rate_window()
    user = await register(client)
    for _ in range(2):
        assert (await client.get(WHOAMI_PATH, headers=bearer(user["access_token"]))).status == 200
    counters = [k async for k in redis.scan_iter(f"{settings.redis_prefix}rl:api-user:{user['user_id']}:*")]
    assert len(counters) == 1
    assert await redis.get(counters[0]) == "2"
    assert 0 < await redis.pttl(counters[0]) <= WINDOW_MS


def test_client_ip_rules() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "192.0.2.1/32"])
    assert proxies.client_ip("198.51.100.7", "1.1.1.1") == "198.51.100.7"  # untrusted peer
    assert proxies.client_ip("10.1.2.3", None) == "10.1.2.3"
    assert proxies.client_ip("10.1.2.3", "1.1.1.1") == "1.1.1.1"
    assert proxies.client_ip("10.1.2.3", "6.6.6.6, 1.1.1.1, 192.0.2.1") == "1.1.1.1"  # skip our proxies
    assert proxies.client_ip("10.1.2.3", "10.0.0.5, 10.0.0.6") == "10.0.0.5"  # all ours
    assert proxies.client_ip("10.1.2.3", "junk, 1.1.1.1") == "1.1.1.1"
    assert proxies.client_ip("10.1.2.3", "1.1.1.1, junk") == "10.1.2.3"  # a bad hop from our proxy's side
    assert proxies.client_ip(None, "1.1.1.1") == "unknown"
    assert TrustedProxies([]).client_ip("10.1.2.3", "1.1.1.1") == "10.1.2.3"


def test_windows() -> None:
    assert current_window(0).retry_after_seconds == 60
    assert current_window(WINDOW_MS - 1).retry_after_seconds == 1
    assert current_window(WINDOW_MS + 30_500).index == 1
    assert current_window(WINDOW_MS + 30_500).retry_after_seconds == 30
