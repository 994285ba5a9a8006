"""Web app sign-in: the refresh token in an HttpOnly cookie scoped to /auth,
used only with the ``X-Refresh-Cookie: 1`` header (CSRF)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import web

from config.settings import Settings
from proximity_server.features.accounts import REFRESH_COOKIE, is_loopback_host, refresh_cookie_secure
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_PASSWORD, WHOAMI_PATH, app_with_probe, bearer, new_email
from tests.conftest import AppClient

COOKIE_MODE = {"X-Refresh-Cookie": "1"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


@pytest.fixture
async def client(aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], settings: Settings) -> AppClient:
    return await aiohttp_client(app_with_probe(settings))


def set_cookie(resp: Any) -> Any:
    """The px_refresh morsel of a response's Set-Cookie headers."""
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    assert REFRESH_COOKIE in jar, resp.headers
    return jar[REFRESH_COOKIE]


def raw_set_cookie(resp: Any) -> str:
    (header,) = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(REFRESH_COOKIE + "=")]
    return str(header)


async def cookie_register(client: AppClient) -> tuple[dict[str, Any], Any]:
    resp = await client.post(
        "/auth/register", json={"email": new_email(), "password": TEST_PASSWORD}, headers=COOKIE_MODE
    )
    assert resp.status == 201, await resp.text()
    return await resp.json(), resp


def refresh_cookie_header(token: str) -> dict[str, str]:
    return {**COOKIE_MODE, "Cookie": f"{REFRESH_COOKIE}={token}"}


@pytest.fixture(autouse=True)
def no_cookie_jar(client: AppClient, request: pytest.FixtureRequest) -> None:
    """Tests send the cookie by hand unless they test the jar itself."""
    if "jar" not in request.node.name:
        jar = client.session.cookie_jar
        jar.update_cookies = lambda *a, **k: None  # type: ignore[method-assign]
        jar.update_cookies_from_headers = lambda *a, **k: None  # type: ignore[method-assign]


async def test_register_sets_an_httponly_strict_cookie_and_no_body_token(client: AppClient) -> None:
    body, resp = await cookie_register(client)
    assert "refresh_token" not in body
    assert set(body) == {"user_id", "access_token", "expires_in"}
    morsel = set_cookie(resp)
    assert morsel.value
    assert morsel["path"] == "/auth"
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert not morsel["secure"], "plain HTTP to 127.0.0.1 must not get Secure"
    assert int(morsel["max-age"]) > 0
    who = await client.get(WHOAMI_PATH, headers=bearer(body["access_token"]))
    assert who.status == 200


async def test_login_in_cookie_mode_sets_the_cookie(client: AppClient) -> None:
    email = new_email()
    assert (await client.post("/auth/register", json={"email": email, "password": TEST_PASSWORD})).status == 201
    resp = await client.post("/auth/login", json={"email": email, "password": TEST_PASSWORD}, headers=COOKIE_MODE)
    assert resp.status == 200
    assert "refresh_token" not in await resp.json()
    assert set_cookie(resp).value


async def test_https_gets_a_secure_cookie(client: AppClient) -> None:
    resp = await client.post(
        "/auth/register",
        json={"email": new_email(), "password": TEST_PASSWORD},
        headers={**COOKIE_MODE, "X-Forwarded-Proto": "https"},
    )
    assert resp.status == 201
    assert set_cookie(resp)["secure"] is True


async def test_a_non_loopback_host_gets_a_secure_cookie(client: AppClient) -> None:
    resp = await client.post(
        "/auth/register",
        json={"email": new_email(), "password": TEST_PASSWORD},
        headers={**COOKIE_MODE, "Host": "app.example.com"},
    )
    assert resp.status == 201
    assert "; Secure" in raw_set_cookie(resp)


@pytest.mark.parametrize(
    ("scheme", "host", "proto", "secure"),
    [
        ("http", "127.0.0.1", None, False),
        ("http", "localhost", None, False),
        ("http", "::1", None, False),
        ("http", "127.0.0.2", None, False),
        ("https", "127.0.0.1", None, True),
        ("http", "127.0.0.1", "https", True),
        ("http", "app.example.com", None, True),
        ("http", "10.0.0.5", None, True),
        ("http", None, None, True),
    ],
)
def test_secure_rule(scheme: str, host: str | None, proto: str | None, secure: bool) -> None:
    assert refresh_cookie_secure(scheme, host, proto) is secure


def test_loopback_names() -> None:
    assert is_loopback_host("[::1]") and is_loopback_host("web.localhost")
    assert not is_loopback_host("localhost.example.com")


async def test_refresh_via_cookie_rotates_it_and_the_old_one_is_refused(client: AppClient) -> None:
    _, resp = await cookie_register(client)
    first = set_cookie(resp).value
    refreshed = await client.post("/auth/refresh", headers=refresh_cookie_header(first))
    assert refreshed.status == 200, await refreshed.text()
    body = await refreshed.json()
    assert "refresh_token" not in body and body["access_token"]
    second = set_cookie(refreshed)
    assert second.value and second.value != first
    assert second["httponly"] is True and second["path"] == "/auth"
    assert (await client.get(WHOAMI_PATH, headers=bearer(body["access_token"]))).status == 200
    # An empty JSON object is as good as no body.
    again = await client.post("/auth/refresh", json={}, headers=refresh_cookie_header(second.value))
    assert again.status == 200, await again.text()
    again_cookie = set_cookie(again).value
    replay = await client.post("/auth/refresh", headers=refresh_cookie_header(first))
    assert replay.status == 401
    assert (await replay.json())["error"]["code"] == "unauthorized"
    dead = set_cookie(replay)  # the refused cookie is cleared
    assert dead.value == "" and dead["max-age"] == "0" and dead["path"] == "/auth"
    # Reuse revoked the whole login: the newest cookie is dead too.
    assert (await client.post("/auth/refresh", headers=refresh_cookie_header(again_cookie))).status == 401


async def test_the_cookie_jar_round_trip(client: AppClient) -> None:
    """As a browser would: the client's jar stores and sends the cookie."""
    await cookie_register(client)
    for _ in range(2):
        resp = await client.post("/auth/refresh", headers=COOKIE_MODE)
        assert resp.status == 200, await resp.text()
    out = await client.post("/auth/logout", headers=COOKIE_MODE)
    assert out.status == 204
    assert (await client.post("/auth/refresh", headers=COOKIE_MODE)).status == 401


async def test_logout_clears_the_cookie_and_revokes_it(client: AppClient) -> None:
    _, resp = await cookie_register(client)
    token = set_cookie(resp).value
    out = await client.post("/auth/logout", headers=refresh_cookie_header(token))
    assert out.status == 204
    cleared = set_cookie(out)
    assert cleared.value == ""
    assert cleared["max-age"] == "0"
    assert cleared["path"] == "/auth"
    assert (await client.post("/auth/refresh", headers=refresh_cookie_header(token))).status == 401


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
@pytest.mark.parametrize("body", [None, {}])
async def test_a_cookie_without_the_header_is_refused_as_csrf(
    client: AppClient, path: str, body: dict[str, Any] | None
) -> None:
    _, resp = await cookie_register(client)
    token = set_cookie(resp).value
    refused = await client.post(path, json=body, headers={"Cookie": f"{REFRESH_COOKIE}={token}"})
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf"
    # The cookie is still good with the header.
    assert (await client.post("/auth/refresh", headers=refresh_cookie_header(token))).status == 200


async def test_cookie_mode_without_a_cookie_is_401(client: AppClient) -> None:
    resp = await client.post("/auth/refresh", headers=COOKIE_MODE)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_cookie_mode_refuses_a_body_token(client: AppClient) -> None:
    await cookie_register(client)
    bad = await client.post("/auth/refresh", json={"refresh_token": "x"}, headers=COOKIE_MODE)
    assert bad.status == 400


async def test_body_mode_is_unchanged(client: AppClient) -> None:
    resp = await client.post("/auth/register", json={"email": new_email(), "password": TEST_PASSWORD})
    assert resp.status == 201
    assert "Set-Cookie" not in resp.headers
    body = await resp.json()
    assert set(body) == {"user_id", "access_token", "refresh_token", "expires_in"}
    refreshed = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status == 200
    assert "Set-Cookie" not in refreshed.headers
    new = await refreshed.json()
    assert new["refresh_token"] != body["refresh_token"]
    out = await client.post("/auth/logout", json={"refresh_token": new["refresh_token"]})
    assert out.status == 204 and "Set-Cookie" not in out.headers
