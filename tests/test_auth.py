"""Accounts: registration, login, JWT access tokens, refresh rotation, logout."""

from __future__ import annotations

import pytest

from config.settings import Settings
from tests.auth_helpers import ACCOUNT_OVERRIDES, TEST_PASSWORD, new_email, register
from tests.conftest import AppClient, MakeClient


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


@pytest.fixture
async def client(make_client: MakeClient) -> AppClient:
    return await make_client()


async def test_register_then_login(client: AppClient) -> None:
    email = new_email()
    body = await register(client, "  " + email.upper() + " ")
    assert set(body) == {"user_id", "access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == 900
    resp = await client.post("/auth/login", json={"email": email, "password": TEST_PASSWORD})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["user_id"] == body["user_id"]
