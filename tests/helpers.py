"""Small helpers shared by the tests."""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp.test_utils import TestClient


def new_token() -> str:
    return "tok_" + secrets.token_hex(8)


async def open_session(client: TestClient[Any, Any], interests: list[str], token: str | None = None) -> tuple[str, str]:
    """Register a session; returns (ble_token, session_id)."""
    token = token or new_token()
    resp = await client.post("/session", json={"ble_token": token, "interests": interests})
    assert resp.status == 201, await resp.text()
    return token, (await resp.json())["session_id"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def attempt_match(client: TestClient[Any, Any], own: str, secret: str, detected: str) -> dict[str, Any]:
    resp = await client.post("/match", json={"own_token": own, "detected_token": detected}, headers=bearer(secret))
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body
