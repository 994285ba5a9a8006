"""DELETE /me: erasure, proved by scanning everything the server keeps.

The main test erases a fully active person (profile, photos, likes, a match,
messages both ways, a block, reports, an open socket, a proximity session)
and then scans every PostgreSQL table of the test schema, every Redis key of
the test prefix (names and values), the photo folder and the server's log
records at DEBUG for the person's id, email, display name and message texts.
Only what the README's "Your data" section says is kept may be found.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from config.settings import Settings, photos_dir
from proximity_server.app import state as keys
from proximity_server.features.erasure import retry_delay
from store.redis_client import RedisClient
from tests.auth_helpers import fresh_rate_window
from tests.conftest import AppClient, MakeClient
from tests.profile_helpers import ACCOUNT_SETTINGS, PASSWORD, User, image_bytes, put_profile, upload

TIMEOUT = 3.0
# Where the erased person's id may still be found (README, "Your data"): the
# tombstone, and the other person's ended match, closed conversation and event log.
ID_KEPT_IN: frozenset[str] = frozenset({"users", "matches", "conversations", "user_events"})


@pytest.fixture
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.with_overrides(**ACCOUNT_SETTINGS, data_dir=tmp_path_factory.mktemp("data"), access_log=True)


async def sign_up_as(client: AppClient, email: str) -> User:
    resp = await client.post("/auth/register", json={"email": email, "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return User(body["user_id"], {"Authorization": f"Bearer {body['access_token']}"})


async def post_ok(client: AppClient, path: str, user: User, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post(path, json=body, headers=user.headers)
    assert resp.status in (200, 201, 204), (path, resp.status, await resp.text())
    return {} if resp.status == 204 else dict(await resp.json())


async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = orjson.loads(msg.data)
    return data


async def socket(client: AppClient, user: User) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/ws", headers=user.headers)
    await ws.send_str(orjson.dumps({"type": "resume", "id": 0, "last_event_id": None}).decode())
    for _ in range(50):
        data = await frame(ws)
        if data["type"] == "result" and data["id"] == 0:
            return ws
    raise AssertionError("no resume result")


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    for _ in range(50):
        data = await frame(ws)
        if data["type"] == kind:
            return data
    raise AssertionError(f"no {kind} frame")


async def postgres_hits(pg: asyncpg.Connection, schema: str, needles: list[str]) -> dict[str, set[str]]:
    """needle -> the tables in which some row, cast to text, contains it."""
    tables = await pg.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
        schema,
    )
    hits: dict[str, set[str]] = {n: set() for n in needles}
    for t in tables:
        name = t["table_name"]
        rows = await pg.fetch(f'SELECT t::text AS row FROM "{schema}"."{name}" t')  # noqa: S608 (from the catalogue)
        for row in rows:
            for needle in needles:
                if needle in row["row"]:
                    hits[needle].add(name)
    assert len(tables) >= 10
    return hits


async def redis_dump(redis: RedisClient, prefix: str) -> list[str]:
    """Every key of the prefix with its value, as text."""
    out = []
    async for raw in redis.scan_iter(match=f"{prefix}*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else raw
        kind = await redis.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value: Any
        if kind == "string":
            value = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        else:
            value = kind
        out.append(f"{key} {value!r}")
    return out


def folder_dump(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")] if root.exists() else []


async def test_erasure_leaves_nothing_but_what_the_readme_keeps(
    make_client: MakeClient,
    settings: Settings,
    pg: asyncpg.Connection,
    redis: RedisClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client()
    tag = secrets.token_hex(4)
    email = f"erase_me_{tag}@example.com"
    name = f"Zephyrine{tag}"
    texts = [f"x-says-{tag}-one", f"x-says-{tag}-two"]
    replies = [f"y-replies-{tag}"]

    x = await sign_up_as(client, email)
    y = await sign_up_as(client, f"partner_{tag}@example.com")
    z = await sign_up_as(client, f"other_{tag}@example.com")
    await put_profile(client, x, display_name=name, bio=f"bio of {name}", gender="woman", interested_in=["man"])
    await put_profile(client, y, display_name="Partner", gender="man", interested_in=["woman"])
    await put_profile(client, z, display_name="Other", gender="man", interested_in=["woman"])
    photos = [await upload(client, x, image_bytes()) for _ in range(2)]
    assert len(folder_dump(photos_dir(settings))) >= 4

    await post_ok(client, "/likes", x, {"user_id": y.user_id, "action": "like"})
    matched = await post_ok(client, "/likes", y, {"user_id": x.user_id, "action": "like"})
    conversation = matched["conversation_id"]
    for i, text in enumerate(texts):
        await post_ok(client, f"/conversations/{conversation}/messages", x, {"client_id": f"x{i}", "text": text})
    sent = await post_ok(client, f"/conversations/{conversation}/messages", y, {"client_id": "y0", "text": replies[0]})
    await post_ok(client, f"/conversations/{conversation}/read", x, {"up_to": sent["id"]})
    await post_ok(client, "/blocks", x, {"user_id": z.user_id})
    await post_ok(client, "/reports", z, {"user_id": x.user_id, "reason": "spam", "details": "sends links"})
    await post_ok(client, "/reports", x, {"user_id": z.user_id, "reason": "scam", "details": "asked for money"})
    resp = await client.post("/session", json={"ble_token": f"tok_{tag}xyz", "interests": ["jazz"]}, headers=x.headers)
    assert resp.status == 201, await resp.text()
    x_socket = await socket(client, x)
    y_socket = await socket(client, y)

    # Re-authentication: a wrong password is 401 and changes nothing.
    resp = await client.delete("/me", json={"password": "not my password at all"}, headers=x.headers)
    assert resp.status == 401
    resp = await client.delete("/me", json={}, headers=x.headers)
    assert resp.status == 400
    resp = await client.delete("/me", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 204, await resp.text()

    msg = await x_socket.receive(timeout=TIMEOUT)
    while msg.type is aiohttp.WSMsgType.TEXT:  # presence of the partner, sent before
        msg = await x_socket.receive(timeout=TIMEOUT)
    assert msg.type is aiohttp.WSMsgType.CLOSE and x_socket.close_code == 4401
    unmatch = await until(y_socket, "unmatch")
    assert unmatch["match_id"] == matched["match_id"] and unmatch["conversation_id"] == conversation
    await y_socket.close()
    await asyncio.sleep(0.3)  # the closed socket releases its presence claim
    # The outbox's last sweep, due a minute later, is run now.
    await client.app[keys.CLEANUP].run_once(horizon_seconds=3600)
    assert await pg.fetchval("SELECT count(*) FROM cleanup_jobs") == 0

    # PostgreSQL: nothing of the person but the id where the README says so.
    needles = [x.user_id, email, name, *texts]
    hits = await postgres_hits(pg, settings.db_schema, needles)
    assert hits[x.user_id] <= ID_KEPT_IN, hits[x.user_id]
    for needle in needles[1:]:
        assert not hits[needle], (needle, hits[needle])
    tombstone = await pg.fetchrow("SELECT * FROM users WHERE id = $1", x.user_id)
    assert tombstone["email"] is None and tombstone["password_hash"] is None and tombstone["deleted_at"]
    pseudonym = tombstone["pseudonym"]
    reports = await pg.fetch("SELECT reporter, reported FROM reports ORDER BY reason")
    assert [(r["reporter"], r["reported"]) for r in reports] == [
        (pseudonym, uuid.UUID(z.user_id)),
        (uuid.UUID(z.user_id), pseudonym),
    ]
    # The other person's messages stay in their (closed) conversation; the erased person's are gone.
    left = await pg.fetch("SELECT text FROM messages WHERE conversation_id = $1", conversation)
    assert [r["text"] for r in left] == replies

    # Redis: no key names or holds the person.
    dump = await redis_dump(redis, settings.redis_prefix)
    assert dump, "the scan saw the test's keys"
    for needle in needles:
        assert not [line for line in dump if needle in line], needle

    # The photo folder: the objects and their folder are gone.
    assert folder_dump(photos_dir(settings)) == []

    # The server's log records, DEBUG and up.
    logged = [f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records]
    assert logged, "logs were captured"
    for needle in needles:
        assert not [line for line in logged if needle in line], needle

    # Seen from outside.
    assert (await client.get(f"/profiles/{x.user_id}", headers=y.headers)).status == 404
    assert (await (await client.get("/discover", headers=y.headers)).json())["items"] == []
    assert (await (await client.get("/matches", headers=y.headers)).json())["items"] == []
    assert (await (await client.get("/conversations", headers=y.headers)).json())["items"] == []
    history = await (await client.get(f"/conversations/{conversation}/messages", headers=y.headers)).json()
    assert [m["text"] for m in history["items"]] == replies
    assert (await client.get(f"/photos/{photos[0]['photo_id']}", headers=y.headers)).status == 404
    # The email is free again; the old token is dead, so a second erasure is 401.
    again = await sign_up_as(client, email)
    assert again.user_id != x.user_id
    resp = await client.delete("/me", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 401
    assert (await client.get("/me", headers=x.headers)).status == 401


async def test_a_failed_object_deletion_is_retried_until_it_succeeds(
    client: AppClient, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    x = await sign_up_as(client, f"retry_{secrets.token_hex(4)}@example.com")
    await upload(client, x, image_bytes())
    store = client.app[keys.PHOTO_STORE]
    real_delete = store.delete
    failing = True

    async def flaky_delete(key: str) -> None:
        if failing:
            raise OSError("storage is down")
        await real_delete(key)

    monkeypatch.setattr(store, "delete", flaky_delete)
    resp = await client.delete("/me", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 204  # the erasure stands; the files wait in the outbox
    jobs = await pg.fetch("SELECT attempts, not_before > now() AS later FROM cleanup_jobs WHERE kind = 'delete_object'")
    assert len(jobs) == 2 and all(j["attempts"] == 1 and j["later"] for j in jobs)
    assert folder_dump(photos_dir(settings))
    worker = client.app[keys.CLEANUP]
    assert await worker.run_once() == 0  # not due yet: backoff
    failing = False
    assert await worker.run_once(horizon_seconds=retry_delay(1)) == 2
    assert await pg.fetchval("SELECT count(*) FROM cleanup_jobs WHERE kind = 'delete_object'") == 0
    assert folder_dump(photos_dir(settings)) == []


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [retry_delay(n) for n in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay(50) == 3600.0


async def test_erasure_is_rate_limited_like_login(make_client: MakeClient) -> None:
    await fresh_rate_window()
    client = await make_client(rate_limit_auth_per_minute=3)
    x = await sign_up_as(client, f"limited_{secrets.token_hex(4)}@example.com")
    statuses = [
        (await client.delete("/me", json={"password": "wrong password here"}, headers=x.headers)).status
        for _ in range(4)
    ]
    assert statuses[:2] == [401, 401] and statuses[-1] == 429


async def test_erasure_removes_the_assessment_and_crossed_paths(client: AppClient) -> None:
    """The compatibility data of an erased person goes too: their assessment
    result and every crossed path they are part of."""
    x = await sign_up_as(client, f"assessed_{secrets.token_hex(4)}@example.com")
    y = await sign_up_as(client, f"passerby_{secrets.token_hex(4)}@example.com")
    pool = client.app[keys.PG_POOL]
    xid, yid = uuid.UUID(x.user_id), uuid.UUID(y.user_id)
    await pool.execute(
        """INSERT INTO attachment_assessments (user_id, answers, anxiety, avoidance, style)
           VALUES ($1, '{}'::jsonb, 2, 2, 'secure')""",
        xid,
    )
    lo, hi = sorted((xid, yid))
    await pool.execute("INSERT INTO crossed_paths (user_lo, user_hi, count, last_at) VALUES ($1, $2, 2, now())", lo, hi)
    resp = await client.delete("/me", json={"password": PASSWORD}, headers=x.headers)
    assert resp.status == 204, await resp.text()
    assert await pool.fetchval("SELECT count(*) FROM attachment_assessments WHERE user_id = $1", xid) == 0
    assert await pool.fetchval("SELECT count(*) FROM crossed_paths WHERE $1 IN (user_lo, user_hi)", xid) == 0
