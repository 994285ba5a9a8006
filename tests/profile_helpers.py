"""Helpers for profile, discovery and photo tests: a signed-up user with a profile."""

from __future__ import annotations

import datetime as dt
import io
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

PASSWORD = "correct horse battery staple"
# Cheap password hashing, a fixed JWT key and roomy rate limits.
ACCOUNT_SETTINGS: dict[str, object] = {
    "password_hash_profile": "test",
    "jwt_secret": "profile-tests-jwt-secret-" + "k" * 32,
    "rate_limit_auth_per_minute": 10_000,
    "rate_limit_api_per_minute": 10_000,
}


@dataclass(frozen=True)
class User:
    user_id: str
    headers: dict[str, str]


async def sign_up(client: TestClient[Any, Any]) -> User:
    """Register through the accounts API (POST /auth/register)."""
    email = f"user_{secrets.token_hex(6)}@example.com"
    resp = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return User(body["user_id"], {"Authorization": f"Bearer {body['access_token']}"})


def birthdate_for_age(age: int) -> str:
    today = dt.datetime.now(dt.UTC).date()
    # Born a few days more than `age` years ago (not near a birthday).
    return (today.replace(year=today.year - age, day=1) - dt.timedelta(days=3)).isoformat()


def profile_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "display_name": "Alex",
        "birthdate": birthdate_for_age(30),
        "gender": "woman",
        "interested_in": ["man"],
        "bio": "hello",
        "interests": ["DevOps", "  Hard   Style "],
    }
    body.update(changes)
    return body


async def put_profile(client: TestClient[Any, Any], user: User, **changes: Any) -> dict[str, Any]:
    resp = await client.put("/me/profile", json=profile_body(**changes), headers=user.headers)
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def with_profile(client: TestClient[Any, Any], **changes: Any) -> User:
    user = await sign_up(client)
    await put_profile(client, user, **changes)
    return user


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, format=fmt, **save)
    return out.getvalue()


def upload_form(data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> FormData:
    form = FormData()
    form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    return form


async def upload(client: TestClient[Any, Any], user: User, data: bytes | None = None) -> dict[str, Any]:
    resp = await client.post("/me/photos", data=upload_form(data or image_bytes()), headers=user.headers)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result
