"""Accounts: registration, login, JWT access tokens, refresh rotation, logout."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from argon2 import PasswordHasher

from config.settings import Settings
from proximity_server.app.state import ACCESS_TOKENS
from proximity_server.features.passwords import PROFILES, common_passwords
from proximity_server.features.tokens import load_or_create_secret
from tests.auth_helpers import (
    ACCOUNT_OVERRIDES,
    TEST_JWT_SECRET,
    TEST_PASSWORD,
    WHOAMI_PATH,
    app_with_probe,
    bearer,
    new_email,
    register,
)
from tests.conftest import AppClient

MakeAuthClient = Callable[..., Awaitable[AppClient]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_overrides(**ACCOUNT_OVERRIDES)


@pytest.fixture
def make_auth_client(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]], settings: Settings
) -> MakeAuthClient:
    async def factory(**overrides: object) -> AppClient:
        return await aiohttp_client(app_with_probe(settings.with_overrides(**overrides)))

    return factory


@pytest.fixture
async def client(make_auth_client: MakeAuthClient) -> AppClient:
    return await make_auth_client()


async def whoami(client: AppClient, token: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(WHOAMI_PATH, headers=bearer(token))
    return resp.status, await resp.json()


async def login(client: AppClient, email: str, password: str = TEST_PASSWORD) -> dict[str, Any]:
    resp = await client.post("/auth/login", json={"email": email, "password": password})
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def refresh(client: AppClient, token: str) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/auth/refresh", json={"refresh_token": token})
    return resp.status, await resp.json()


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forge(payload: dict[str, Any], key: str = TEST_JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- registration and login -------------------------------------------------


async def test_register_then_login(client: AppClient, settings: Settings, pg: asyncpg.Connection) -> None:
    email = new_email()
    body = await register(client, "  " + email.upper() + " ")
    assert set(body) == {"user_id", "access_token", "refresh_token", "expires_in"}
    assert body["expires_in"] == 900
    assert uuid.UUID(body["user_id"])
    token_claims = claims(body["access_token"])
    assert token_claims["sub"] == body["user_id"]
    assert token_claims["iss"] == settings.jwt_issuer and token_claims["aud"] == settings.jwt_audience
    assert token_claims["exp"] - token_claims["iat"] == pytest.approx(900, abs=1)
    assert token_claims["jti"]

    row = await pg.fetchrow("SELECT email, password_hash FROM users WHERE id = $1", uuid.UUID(body["user_id"]))
    assert row["email"] == email  # trimmed and lower-cased
    assert row["password_hash"].startswith("$argon2id$")
    stored = await pg.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = $1", uuid.UUID(body["user_id"]))
    assert stored == 1

    again = await login(client, email.upper())
    assert again["user_id"] == body["user_id"]
    assert again["refresh_token"] != body["refresh_token"]
    status, me = await whoami(client, again["access_token"])
    assert status == 200 and me["user_id"] == body["user_id"]


async def test_refresh_tokens_are_stored_hashed(client: AppClient, pg: asyncpg.Connection) -> None:
    body = await register(client)
    hashes = await pg.fetch("SELECT token_hash FROM refresh_tokens")
    assert [len(r["token_hash"]) for r in hashes] == [32]
    assert body["refresh_token"].encode() not in hashes[0]["token_hash"]
    assert len(base64.urlsafe_b64decode(body["refresh_token"] + "==")) == 32  # 256 bits


async def test_duplicate_email_is_a_conflict(client: AppClient, pg: asyncpg.Connection) -> None:
    email = new_email()
    await register(client, email)
    resp = await client.post("/auth/register", json={"email": email.upper(), "password": "another long password"})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "conflict"
    index = await pg.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email_live_key'")
    assert "UNIQUE" in index and "deleted_at IS NULL" in index
    # A deleted account frees its email.
    await pg.execute("UPDATE users SET deleted_at = now() WHERE email = $1", email)
    await register(client, email)


@pytest.mark.parametrize(
    "password",
    ["short1!", "123456789", "qwertyuiop", "password123", "Password123", "michael1985", "1q2w3e4r5t", "iloveyou123"],
)
async def test_weak_and_common_passwords_are_refused(client: AppClient, password: str) -> None:
    resp = await client.post("/auth/register", json={"email": new_email(), "password": password})
    assert resp.status == 400, password
    assert (await resp.json())["error"]["code"] == "weak_password"


def test_common_password_list_is_large() -> None:
    path = Path(__file__).resolve().parents[2] / "proximity_server" / "features" / "data" / "common_passwords.txt"
    entries = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    assert len(entries) >= 10_000
    assert "password1234" in common_passwords()


def test_production_hash_profile_is_the_default() -> None:
    assert Settings().password_hash_profile == "production"
    assert Settings.from_env({}).password_hash_profile == "production"
    assert PROFILES["production"].memory_cost_kib >= 19 * 1024


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
        ({"data": b'["a"]', "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
        ({"data": b"email=a", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
        ({"json": {"email": "a@example.com"}}, 400, "invalid_field"),
        ({"json": {"email": 5, "password": TEST_PASSWORD}}, 400, "invalid_field"),
        ({"json": {"email": "a@example.com", "password": ["x"]}}, 400, "invalid_field"),
        ({"json": {"email": "a@example.com", "password": TEST_PASSWORD, "admin": True}}, 400, "unknown_field"),
        ({"json": {"email": "not-an-email", "password": TEST_PASSWORD}}, 400, "invalid_field"),
        ({"json": {"email": "a @example.com", "password": TEST_PASSWORD}}, 400, "invalid_field"),
        ({"json": {"email": "a@localhost", "password": TEST_PASSWORD}}, 400, "invalid_field"),
        ({"json": {"email": "a" * 250 + "@example.com", "password": TEST_PASSWORD}}, 400, "invalid_field"),
    ],
)
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
async def test_bad_input_is_refused(
    client: AppClient, path: str, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    resp = await client.post(path, **kwargs)
    assert resp.status == status
    body = await resp.json()
    if code:
        assert body["error"]["code"] == code


@pytest.mark.parametrize("path", ["/auth/refresh", "/auth/logout"])
async def test_bad_refresh_input(client: AppClient, path: str) -> None:
    for payload, status in [({}, 400), ({"refresh_token": 1}, 400), ({"refresh_token": "x", "y": 1}, 400)]:
        resp = await client.post(path, json=payload)
        assert resp.status == status
    for token in ["", "nope", "x" * 500]:
        resp = await client.post(path, json={"refresh_token": token})
        assert resp.status == 401


async def test_wrong_password_and_unknown_email_look_the_same(
    make_auth_client: MakeAuthClient,
) -> None:
    client = await make_auth_client(password_hash_profile="production")
    email = new_email()
    await register(client, email)

    async def attempt(address: str) -> tuple[float, int, bytes]:
        started = time.perf_counter()
        resp = await client.post("/auth/login", json={"email": address, "password": "wrong password here"})
        return time.perf_counter() - started, resp.status, orjson.loads(await resp.read())["error"]

    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(await attempt(email))
        unknown.append(await attempt(new_email()))
    assert {(s, orjson.dumps(e)) for _, s, e in wrong} == {(s, orjson.dumps(e)) for _, s, e in unknown}
    assert wrong[0][1] == 401
    ratio = statistics.median(t for t, _, _ in unknown) / statistics.median(t for t, _, _ in wrong)
    assert 0.5 < ratio < 2.0, ratio


async def test_hashing_runs_off_the_event_loop(client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify

    def spy_hash(self: PasswordHasher, password: str | bytes, *, salt: bytes | None = None) -> str:
        threads.append(threading.current_thread().name)
        return real_hash(self, password, salt=salt)

    def spy_verify(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        threads.append(threading.current_thread().name)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "hash", spy_hash)
    monkeypatch.setattr(PasswordHasher, "verify", spy_verify)
    email = new_email()
    await register(client, email)
    await login(client, email)
    resp = await client.post("/auth/login", json={"email": new_email(), "password": TEST_PASSWORD})
    assert resp.status == 401
    assert len(threads) == 3
    assert all(name.startswith("password-hash") for name in threads), threads


# -- access tokens ----------------------------------------------------------


async def test_access_token_identifies_the_user(client: AppClient) -> None:
    body = await register(client)
    status, me = await whoami(client, body["access_token"])
    assert status == 200
    assert me["user_id"] == body["user_id"]
    assert me["jti"] == claims(body["access_token"])["jti"]


async def test_bad_access_tokens_are_refused(client: AppClient) -> None:
    body = await register(client)
    good = claims(body["access_token"])
    now = int(time.time())
    none_token = _b64(orjson.dumps({"alg": "none", "typ": "JWT"})) + "." + _b64(orjson.dumps(good)) + "."
    cases = {
        "missing": None,
        "garbage": "not.a.jwt",
        "forged": forge(good, key="some-other-secret-" + "z" * 48),
        "expired": forge({**good, "iat": now - 3600, "exp": now - 60}),
        "wrong audience": forge({**good, "aud": "someone-else"}),
        "wrong issuer": forge({**good, "iss": "someone-else"}),
        "alg none": none_token,
        "alg none, signed": none_token + _b64(b"sig"),
        "HS512": forge(good, algorithm="HS512"),
        "no jti": forge({k: v for k, v in good.items() if k != "jti"}),
        "no iat": forge({k: v for k, v in good.items() if k != "iat"}),
        "no exp": forge({k: v for k, v in good.items() if k != "exp"}),
        "bad sub": forge({**good, "sub": "admin"}),
        "unknown user": forge({**good, "sub": str(uuid.uuid4())}),
    }
    for name, token in cases.items():
        headers = {} if token is None else bearer(token)
        resp = await client.get(WHOAMI_PATH, headers=headers)
        assert resp.status == 401, name
        assert (await resp.json())["error"]["code"] == "unauthorized", name
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert (await whoami(client, body["access_token"]))[0] == 200


# -- refresh tokens ---------------------------------------------------------


async def test_refresh_rotates(client: AppClient) -> None:
    first = await register(client)
    status, second = await refresh(client, first["refresh_token"])
    assert status == 200
    assert set(second) == {"user_id", "access_token", "refresh_token", "expires_in"}
    assert second["user_id"] == first["user_id"]
    assert second["refresh_token"] != first["refresh_token"]
    assert claims(second["access_token"])["jti"] != claims(first["access_token"])["jti"]
    status, third = await refresh(client, second["refresh_token"])
    assert status == 200
    assert (await whoami(client, third["access_token"]))[0] == 200


async def test_reused_refresh_token_revokes_its_family(client: AppClient) -> None:
    email = new_email()
    first = await register(client, email)
    other_device = await login(client, email)
    _, second = await refresh(client, first["refresh_token"])
    status, error = await refresh(client, first["refresh_token"])  # replayed
    assert status == 401 and error["error"]["code"] == "unauthorized"
    assert (await refresh(client, second["refresh_token"]))[0] == 401  # the whole family died
    assert (await refresh(client, other_device["refresh_token"]))[0] == 200  # other logins live on


async def test_concurrent_refresh_with_one_token_succeeds_once(client: AppClient) -> None:
    first = await register(client)
    results = await asyncio.gather(*(refresh(client, first["refresh_token"]) for _ in range(4)))
    assert sorted(status for status, _ in results) == [200, 401, 401, 401]


async def test_expired_refresh_token_is_refused(client: AppClient, pg: asyncpg.Connection) -> None:
    first = await register(client)
    await pg.execute("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
    assert (await refresh(client, first["refresh_token"]))[0] == 401
    await pg.execute("UPDATE refresh_tokens SET expires_at = now() + interval '7 days'")
    assert (await refresh(client, first["refresh_token"]))[0] == 200


async def test_refresh_tokens_last_seven_days(client: AppClient, pg: asyncpg.Connection) -> None:
    await register(client)
    days = await pg.fetchval("SELECT extract(epoch FROM expires_at - created_at) / 86400 FROM refresh_tokens")
    assert float(days) == pytest.approx(7, abs=0.01)


# -- logout -----------------------------------------------------------------


async def test_logout_revokes_that_login(client: AppClient) -> None:
    email = new_email()
    first = await register(client, email)
    _, rotated = await refresh(client, first["refresh_token"])
    other_device = await login(client, email)
    resp = await client.post("/auth/logout", json={"refresh_token": rotated["refresh_token"]})
    assert resp.status == 204
    assert (await refresh(client, rotated["refresh_token"]))[0] == 401
    assert (await refresh(client, other_device["refresh_token"]))[0] == 200


async def test_logout_all_kills_every_token(
    client: AppClient, make_auth_client: MakeAuthClient, redis: aioredis.Redis, settings: Settings
) -> None:
    email = new_email()
    first = await register(client, email)
    second = await login(client, email)
    other_instance = await make_auth_client()
    pubsub = redis.pubsub()
    await pubsub.subscribe(f"{settings.redis_prefix}ev:user:{first['user_id']}")
    try:
        await pubsub.get_message(timeout=1.0)  # subscribe confirmation
        before = int(time.time() * 1000)
        resp = await client.post("/auth/logout-all", headers=bearer(second["access_token"]))
        assert resp.status == 204
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert message is not None
    event, _, ts = message["data"].partition("|")
    assert event == "logout" and before <= int(ts) <= (time.time() + 1) * 1000  # milliseconds

    for pair in (first, second):
        assert (await refresh(client, pair["refresh_token"]))[0] == 401
        assert (await whoami(client, pair["access_token"]))[0] == 401
        assert (await whoami(other_instance, pair["access_token"]))[0] == 401

    # A login right after (even within the same second) works at once.
    fresh = await login(client, email)
    assert (await whoami(client, fresh["access_token"]))[0] == 200
    assert (await whoami(other_instance, fresh["access_token"]))[0] == 200


async def test_logout_all_rejects_tokens_every_process_has_cached(
    client: AppClient, make_auth_client: MakeAuthClient
) -> None:
    """Both processes have verified (and so cached) the token: revocation still wins at once on both."""
    body = await register(client)
    other_instance = await make_auth_client()
    for instance in (client, other_instance):
        assert (await whoami(instance, body["access_token"]))[0] == 200
        assert instance.app is not None and instance.app[ACCESS_TOKENS].cached_tokens == 1
    assert (await client.post("/auth/logout-all", headers=bearer(body["access_token"]))).status == 204
    for instance in (other_instance, client):
        assert (await whoami(instance, body["access_token"]))[0] == 401


async def test_revocation_survives_a_cold_cache(client: AppClient, redis: aioredis.Redis, settings: Settings) -> None:
    body = await register(client)
    assert (await client.post("/auth/logout-all", headers=bearer(body["access_token"]))).status == 204
    cache_key = f"{settings.redis_prefix}user:{body['user_id']}:tokens_valid_after"
    assert await redis.get(cache_key)
    await redis.delete(cache_key)
    assert (await whoami(client, body["access_token"]))[0] == 401  # read back from PostgreSQL
    assert await redis.get(cache_key)


async def test_deleted_user_tokens_stop_working(
    client: AppClient, pg: asyncpg.Connection, redis: aioredis.Redis, settings: Settings
) -> None:
    body = await register(client)
    await pg.execute("UPDATE users SET deleted_at = now()")
    await redis.delete(f"{settings.redis_prefix}user:{body['user_id']}:tokens_valid_after")
    assert (await whoami(client, body["access_token"]))[0] == 401
    assert (await refresh(client, body["refresh_token"]))[0] == 401


async def test_logout_all_needs_an_access_token(client: AppClient) -> None:
    body = await register(client)
    assert (await client.post("/auth/logout-all")).status == 401
    resp = await client.post("/auth/logout-all", headers=bearer(body["refresh_token"]))
    assert resp.status == 401


# -- the signing key --------------------------------------------------------


def test_generated_secret_is_private_and_shared(tmp_path: Path) -> None:
    first = load_or_create_secret(None, tmp_path)
    path = tmp_path / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(None, tmp_path) == first
    assert len(first) >= 32
    assert [p.name for p in tmp_path.iterdir()] == ["jwt_secret"]  # no temporary files left


def test_concurrent_secret_creation_agrees(tmp_path: Path) -> None:
    import concurrent.futures

    # Threads race on the file system exactly as processes would (link() is atomic).
    start = threading.Barrier(8)

    def create(_: int) -> bytes:
        start.wait()
        return load_or_create_secret(None, tmp_path)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        secrets_ = list(pool.map(create, range(8)))
    assert len(set(secrets_)) == 1


def test_short_configured_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        load_or_create_secret("short", tmp_path)


async def test_app_without_secret_uses_the_data_dir(make_auth_client: MakeAuthClient, tmp_path: Path) -> None:
    one = await make_auth_client(jwt_secret=None, data_dir=tmp_path)
    two = await make_auth_client(jwt_secret=None, data_dir=tmp_path)
    body = await register(one)
    assert (await whoami(two, body["access_token"]))[0] == 200
    assert (tmp_path / "jwt_secret").exists()
    assert os.stat(tmp_path / "jwt_secret").st_mode & 0o077 == 0


def test_account_settings_from_env(tmp_path: Path) -> None:
    secret_file = tmp_path / "jwt"
    secret_file.write_text("s" * 40 + "\n")
    s = Settings.from_env(
        {
            "JWT_SECRET_FILE": str(secret_file),
            "JWT_ISSUER": "iss",
            "JWT_AUDIENCE": "aud",
            "RATE_LIMIT_AUTH_PER_MINUTE": "5",
            "RATE_LIMIT_API_PER_MINUTE": "50",
            "TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,::1",
            "PASSWORD_HASH_PROFILE": "test",
        }
    )
    assert s.jwt_secret == "s" * 40
    assert (s.jwt_issuer, s.jwt_audience) == ("iss", "aud")
    assert (s.rate_limit_auth_per_minute, s.rate_limit_api_per_minute) == (5, 50)
    assert s.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16", "::1/128")
    assert s.password_hash_profile == "test"
    assert "s" * 40 not in repr(s)
    defaults = Settings.from_env({})
    assert (defaults.rate_limit_auth_per_minute, defaults.rate_limit_api_per_minute) == (10, 100)
    assert defaults.jwt_secret is None and defaults.trusted_proxies == ()


@pytest.mark.parametrize(
    "env",
    [{"TRUSTED_PROXIES": "10.0.0.300"}, {"PASSWORD_HASH_PROFILE": "fast"}, {"RATE_LIMIT_API_PER_MINUTE": "0"}],
)
def test_bad_account_settings_are_refused(env: dict[str, str]) -> None:
    from config.settings import SettingsError

    with pytest.raises(SettingsError):
        Settings.from_env(env)
