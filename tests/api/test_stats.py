"""GET /stats and the counter flush: admin auth, exact counts, nothing lost
across a restart, exactly-once flushing."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import redis.asyncio as aioredis

from config.settings import Settings
from proximity_server.app import state as keys
from store.redis_keys import Keys
from tests.conftest import ADMIN_TOKEN, AppClient, MakeClient
from tests.helpers import attempt_match, bearer, open_session


async def get_stats(client: AppClient) -> dict[str, object]:
    resp = await client.get("/stats", headers=bearer(ADMIN_TOKEN))
    assert resp.status == 200, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def test_stats_needs_the_admin_token(client: AppClient) -> None:
    resp = await client.get("/stats")
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.get("/stats", headers=bearer("not-the-admin-token"))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"


async def test_stats_without_configured_admin_token_refuse_everyone(make_client: MakeClient) -> None:
    client = await make_client(admin_token=None)
    resp = await client.get("/stats", headers=bearer("anything"))
    assert resp.status == 403


async def test_counts_are_exact_before_and_after_flush(make_client: MakeClient, pg: asyncpg.Connection) -> None:
    client = await make_client(stats_min_count=1)  # these counts are small: show them
    a, sa = await open_session(client, ["devops", "hardstyle"])
    b, sb = await open_session(client, ["coding"])
    c, sc = await open_session(client, ["hiking", "techno"])
    await attempt_match(client, a, sa, b)  # tech
    await attempt_match(client, b, sb, a)  # same pair: not counted again
    await attempt_match(client, c, sc, a)  # music
    await attempt_match(client, c, sc, b)  # nothing shared
    # a refresh is not a new session
    resp = await client.post("/session", json={"ble_token": a, "interests": ["devops"]}, headers=bearer(sa))
    assert resp.status == 200
    expected = {
        "total_sessions_today": 3,
        "total_matches_today": 2,
        "top_interest_categories": ["music", "tech", "outdoors"],
        "active_sessions_now": 3,
    }
    assert await get_stats(client) == expected
    await client.app[keys.FLUSHER].flush_once()
    assert await get_stats(client) == expected
    today = dt.datetime.now(dt.UTC).date()
    row = await pg.fetchrow("SELECT total_sessions, total_matches FROM daily_stats WHERE date = $1", today)
    assert tuple(row) == (3, 2)
    counts = dict(await pg.fetch("SELECT category, count FROM interest_category_counts WHERE date = $1", today))
    assert counts == {"tech": 2, "music": 2, "outdoors": 1}


async def test_restart_loses_no_count(make_client: MakeClient, pg: asyncpg.Connection) -> None:
    first = await make_client()
    for _ in range(4):
        await open_session(first, ["devops"])
    await first.close()  # shutdown flushes the counters
    today = dt.datetime.now(dt.UTC).date()
    assert await pg.fetchval("SELECT total_sessions FROM daily_stats WHERE date = $1", today) == 4
    second = await make_client()
    await open_session(second, ["devops"])
    stats = await get_stats(second)
    assert stats["total_sessions_today"] == 5
    assert stats["active_sessions_now"] == 5


async def test_a_retried_batch_is_not_counted_twice(
    client: AppClient, redis: aioredis.Redis, settings: Settings, pg: asyncpg.Connection
) -> None:
    await open_session(client, ["devops"])
    prefix = settings.redis_prefix
    await client.app[keys.FLUSHER].flush_once()
    batch_id = await pg.fetchval("SELECT batch_id FROM stats_flush_batches")
    # Simulate a crash after COMMIT but before the inflight hash was deleted.
    today = dt.datetime.now(dt.UTC).date().isoformat()
    await redis.hset(Keys(prefix).inflight_counters, mapping={"batch": batch_id, f"s|{today}": 1})
    stats = await get_stats(client)
    assert stats["total_sessions_today"] == 1  # the applied batch is not counted twice
    await client.app[keys.FLUSHER].flush_once()
    assert not await redis.exists(Keys(prefix).inflight_counters)
    assert (await get_stats(client))["total_sessions_today"] == 1


async def test_active_sessions_drop_when_sessions_expire(make_client: MakeClient) -> None:
    client = await make_client(session_ttl_seconds=1)
    await open_session(client, ["devops"])
    await open_session(client, ["devops"])
    assert (await get_stats(client))["active_sessions_now"] == 2
    await asyncio.sleep(1.2)
    assert (await get_stats(client))["active_sessions_now"] == 0
    assert (await get_stats(client))["total_sessions_today"] == 2


async def test_a_flush_racing_a_read_is_not_counted_twice(
    client: AppClient, redis: aioredis.Redis, settings: Settings, pg: asyncpg.Connection
) -> None:
    """The reader snapshots Redis, then another process's flush commits, then
    the reader queries PostgreSQL: the pending counters are in both places."""
    await open_session(client, ["devops"])
    await get_stats(client)  # the first read fixes the batch epoch of this Redis
    batches = await redis.hgetall(Keys(settings.redis_prefix).counter_batches)
    next_batch = f"{batches['epoch']!s}:{int(batches.get('seq', 0)) + 1}"
    today = dt.datetime.now(dt.UTC).date()
    # What that flush commits, while Redis still shows the counters as pending:
    await pg.execute("INSERT INTO stats_flush_batches (batch_id) VALUES ($1)", next_batch)
    await pg.execute("INSERT INTO daily_stats (date, total_sessions, total_matches) VALUES ($1, 1, 0)", today)
    assert (await get_stats(client))["total_sessions_today"] == 1
