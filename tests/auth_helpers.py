"""Helpers for tests that need accounts: cheap password hashing, a fixed JWT
key and roomy rate limits, a probe route behind ``authenticated_user``, and
registering a user in one call."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from config.settings import Settings
from proximity_server import create_app
from proximity_server.app.auth import authenticated_user

TEST_JWT_SECRET = "test-jwt-secret-" + "k" * 48
TEST_PASSWORD = "correct horse battery staple"
WHOAMI_PATH = "/_test/whoami"
# Settings overrides for make_client(**ACCOUNT_OVERRIDES) or a settings fixture.
ACCOUNT_OVERRIDES: dict[str, object] = {
    "password_hash_profile": "test",
    "jwt_secret": TEST_JWT_SECRET,
    "rate_limit_auth_per_minute": 1000,
    "rate_limit_api_per_minute": 1000,
}


def new_email() -> str:
    return f"user_{secrets.token_hex(6)}@example.com"


async def register(
    client: TestClient[Any, Any], email: str | None = None, password: str = TEST_PASSWORD
) -> dict[str, Any]:
    """Register a user; returns the token pair body (user_id, access_token, refresh_token, expires_in)."""
    resp = await client.post("/auth/register", json={"email": email or new_email(), "password": password})
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _whoami(request: web.Request) -> web.Response:
    user = await authenticated_user(request)
    return web.json_response({"user_id": user.user_id, "jti": user.jti, "issued_at": user.issued_at.isoformat()})


def app_with_probe(settings: Settings) -> web.Application:
    """The real app plus ``GET /_test/whoami``, which only calls ``authenticated_user``."""
    app = create_app(settings)
    app.router.add_get(WHOAMI_PATH, _whoami, allow_head=False)
    return app


async def fresh_rate_window(margin_seconds: float = 5.0) -> None:
    """Wait if the one-minute rate-limit window is about to roll over."""
    into = time.time() % 60
    if into > 60 - margin_seconds:
        await asyncio.sleep(60 - into + 0.05)


def access(body: dict[str, Any]) -> dict[str, str]:
    """The ``Authorization`` header for a token pair's access token."""
    return bearer(body["access_token"])
