"""Helpers for tests that need accounts: cheap password hashing, a fixed JWT
key and roomy rate limits, plus registering a user in one call."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient

TEST_JWT_SECRET = "test-jwt-secret-" + "k" * 32
TEST_PASSWORD = "correct horse battery staple"
# Settings overrides for make_client(**ACCOUNT_OVERRIDES) or a settings fixture.
ACCOUNT_OVERRIDES: dict[str, object] = {
    "password_hash_profile": "test",
    "jwt_secret": TEST_JWT_SECRET,
    "rate_limit_auth_per_minute": 1000,
    "rate_limit_api_per_minute": 1000,
}


def new_email() -> str:
    return f"user_{secrets.token_hex(6)}@example.com"


async def register(client: TestClient[Any, Any], email: str | None = None, password: str = TEST_PASSWORD) -> dict[str, Any]:
    """Register a user; returns the token pair body (user_id, access_token, refresh_token, expires_in)."""
    resp = await client.post("/auth/register", json={"email": email or new_email(), "password": password})
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def access(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}
