"""Aggregate counters: accumulated in Redis on the hot path, flushed here to
PostgreSQL, and read back for ``GET /stats``.

Flushing is exactly-once. A script moves the pending counters to an
"inflight" hash tagged with the next batch id (or returns the inflight batch a
crash left behind). The batch is added to PostgreSQL in one transaction that
also records the batch id; only then is the inflight hash deleted. A batch
retried after a crash finds its id recorded and is not counted twice.

Batch ids are ``<epoch>:<n>``: ``n`` counts up, ``epoch`` is random per Redis
dataset, so a Redis that lost its data never reuses an id. Because the id the
pending counters *will* get is known in advance, a reader can tell exactly
whether a flush raced its snapshot (see ``day_stats``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg

from store.redis_client import RedisClient
from store.redis_keys import Keys

BATCH_FIELD = "batch"
BATCH_RETENTION_DAYS = 7

# Counter field names written by the Lua scripts: "s|DAY", "m|DAY", "c|DAY|CATEGORY".
SESSIONS = "s"
MATCHES = "m"
CATEGORY = "c"
# Hourly fields: "h|s|HOUR", "h|m|HOUR", "h|c|HOUR|CATEGORY" (HOUR is YYYY-MM-DDTHH, UTC).
HOURLY = "h"
# Metric names in hourly_stats; a category's sessions are "c:<category>".
HOURLY_METRICS: dict[str, str] = {SESSIONS: "sessions", MATCHES: "matches"}
CATEGORY_METRIC_PREFIX = "c:"
ACTIVE_USERS_TTL_SECONDS = 3 * 24 * 3600

# KEYS: pending, inflight, batches. ARGV[1]: a fresh random epoch, used if none is set yet.
_MOVE_PENDING = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.call('HGETALL', KEYS[2])
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('HSETNX', KEYS[3], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[3], 'epoch')
local n = redis.call('HINCRBY', KEYS[3], 'seq', 1)
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 'batch', epoch .. ':' .. n)
return redis.call('HGETALL', KEYS[2])
"""


# KEYS: pending, inflight, batches, active sessions (all in the {stats} slot).
# ARGV[1]: now (ms). One consistent snapshot for a reader.
_SNAPSHOT = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
        redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[1], '+inf')}
"""


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass
class CounterBatch:
    sessions: dict[dt.date, int] = field(default_factory=lambda: defaultdict(int))
    matches: dict[dt.date, int] = field(default_factory=lambda: defaultdict(int))
    categories: dict[tuple[dt.date, str], int] = field(default_factory=lambda: defaultdict(int))
    hourly: dict[tuple[dt.datetime, str], int] = field(default_factory=lambda: defaultdict(int))

    def _add_hourly(self, parts: list[str], raw: str) -> None:
        try:
            hour = dt.datetime.strptime(parts[2], "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
            value = int(raw)
        except ValueError:
            return
        if parts[1] in HOURLY_METRICS and len(parts) == 3:
            self.hourly[(hour, HOURLY_METRICS[parts[1]])] += value
        elif parts[1] == CATEGORY and len(parts) == 4:
            self.hourly[(hour, CATEGORY_METRIC_PREFIX + parts[3])] += value

    def add_fields(self, fields: dict[str, str]) -> None:
        for name, raw in fields.items():
            parts = name.split("|")
            if len(parts) < 2:
                continue
            if parts[0] == HOURLY:
                if len(parts) >= 3:
                    self._add_hourly(parts, raw)
                continue
            try:
                day = dt.date.fromisoformat(parts[1])
                value = int(raw)
            except ValueError:
                continue
            if parts[0] == SESSIONS:
                self.sessions[day] += value
            elif parts[0] == MATCHES:
                self.matches[day] += value
            elif parts[0] == CATEGORY and len(parts) == 3:
                self.categories[(day, parts[2])] += value

    @property
    def empty(self) -> bool:
        return not (self.sessions or self.matches or self.categories or self.hourly)


@dataclass(frozen=True, slots=True)
class DayStats:
    total_sessions: int
    total_matches: int
    category_counts: dict[str, int]
    active_sessions: int


class StatsStore:
    def __init__(self, client: RedisClient, pool: asyncpg.Pool, keys: Keys) -> None:
        self._client = client
        self._pool = pool
        self._keys = keys
        self._move = client.register_script(_MOVE_PENDING)
        self._snapshot = client.register_script(_SNAPSHOT)

    async def ensure_epoch(self) -> None:
        """Give this Redis dataset its batch epoch before any reader needs it."""
        await self._client.hsetnx(self._keys.counter_batches, "epoch", uuid.uuid4().hex)

    async def flush(self) -> int:
        """Move pending counters into PostgreSQL; returns how many fields moved."""
        k = self._keys
        flat = await self._move(
            keys=[k.pending_counters, k.inflight_counters, k.counter_batches], args=[uuid.uuid4().hex]
        )
        if not flat:
            return 0
        fields = _pairs(flat)
        batch_id = fields.pop(BATCH_FIELD, None) or uuid.uuid4().hex
        batch = CounterBatch()
        batch.add_fields(fields)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._apply_batch_in_transaction(conn, batch_id, batch)
        await self._client.delete(k.inflight_counters)
        return len(fields)

    @staticmethod
    async def _apply_batch_in_transaction(conn: asyncpg.Connection, batch_id: str, batch: CounterBatch) -> None:
        first = await conn.fetchval(
            "INSERT INTO stats_flush_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING batch_id",
            batch_id,
        )
        if first is None:
            return  # applied before a crash; only the Redis clean-up was lost
        days = set(batch.sessions) | set(batch.matches)
        if days:
            await conn.executemany(
                """INSERT INTO daily_stats (date, total_sessions, total_matches) VALUES ($1, $2, $3)
                   ON CONFLICT (date) DO UPDATE
                   SET total_sessions = daily_stats.total_sessions + EXCLUDED.total_sessions,
                       total_matches = daily_stats.total_matches + EXCLUDED.total_matches""",
                [(day, batch.sessions.get(day, 0), batch.matches.get(day, 0)) for day in sorted(days)],
            )
        if batch.categories:
            await conn.executemany(
                """INSERT INTO interest_category_counts (date, category, count) VALUES ($1, $2, $3)
                   ON CONFLICT (date, category) DO UPDATE
                   SET count = interest_category_counts.count + EXCLUDED.count""",
                [(day, category, n) for (day, category), n in sorted(batch.categories.items())],
            )
        if batch.hourly:
            await conn.executemany(
                """INSERT INTO hourly_stats (hour, metric, count) VALUES ($1, $2, $3)
                   ON CONFLICT (metric, hour) DO UPDATE SET count = hourly_stats.count + EXCLUDED.count""",
                [(hour, metric, n) for (hour, metric), n in sorted(batch.hourly.items())],
            )
        await conn.execute(
            "DELETE FROM stats_flush_batches WHERE flushed_at < now() - make_interval(days => $1)",
            BATCH_RETENTION_DAYS,
        )

    async def prune_expired_sessions(self, now_ms: int) -> int:
        removed = await self._client.zremrangebyscore(self._keys.active_sessions, "-inf", now_ms)
        return int(removed)

    async def day_stats(self, day: dt.date, now_ms: int) -> DayStats:
        """Durable counts for ``day`` plus what Redis holds that is not flushed yet."""
        k = self._keys
        while True:
            flat_pending, flat_inflight, flat_batches, active = await self._snapshot(
                keys=[k.pending_counters, k.inflight_counters, k.counter_batches, k.active_sessions], args=[now_ms]
            )
            pending, inflight, batches = _pairs(flat_pending), _pairs(flat_inflight), _pairs(flat_batches)
            if "epoch" in batches:
                break
            await self.ensure_epoch()  # a fresh Redis: fix the epoch, then look again
        # The id the pending counters get when they are flushed next.
        pending_batch = f"{batches.get('epoch', '')}:{int(batches.get('seq', 0)) + 1}"
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            row = await conn.fetchrow(
                """SELECT d.total_sessions, d.total_matches,
                          EXISTS (SELECT 1 FROM stats_flush_batches WHERE batch_id = $2) AS inflight_applied,
                          EXISTS (SELECT 1 FROM stats_flush_batches WHERE batch_id = $3) AS pending_applied
                   FROM (SELECT $1::date AS date) AS q
                   LEFT JOIN daily_stats d ON d.date = q.date""",
                day,
                inflight.get(BATCH_FIELD, ""),
                pending_batch,
            )
            rows = await conn.fetch("SELECT category, count FROM interest_category_counts WHERE date = $1", day)
        # A flush that committed after the Redis snapshot is already in the
        # PostgreSQL figures: count its counters once, from PostgreSQL.
        unflushed = CounterBatch()
        if not row["pending_applied"]:
            unflushed.add_fields(pending)
        if inflight and not row["inflight_applied"]:
            unflushed.add_fields({n: v for n, v in inflight.items() if n != BATCH_FIELD})
        categories: dict[str, int] = {r["category"]: int(r["count"]) for r in rows}
        for (d, category), n in unflushed.categories.items():
            if d == day:
                categories[category] = categories.get(category, 0) + n
        return DayStats(
            total_sessions=int(row["total_sessions"] or 0) + unflushed.sessions.get(day, 0),
            total_matches=int(row["total_matches"] or 0) + unflushed.matches.get(day, 0),
            category_counts=categories,
            active_sessions=int(active),
        )

    async def record_active_users(self, day: dt.date, user_ids: list[str]) -> int:
        """Add users to the day's HyperLogLog and keep its count in PostgreSQL
        (never lowered: a retried flush cannot undo a higher count)."""
        key = self._keys.active_users(day.isoformat())
        # One command at a time: redis-py refuses a pipelined PFCOUNT on a cluster.
        if user_ids:
            await self._client.pfadd(key, *user_ids)
        await self._client.expire(key, ACTIVE_USERS_TTL_SECONDS)
        count = await self._client.pfcount(key)
        await self._pool.execute(
            """INSERT INTO daily_active_users (date, count) VALUES ($1, $2)
               ON CONFLICT (date) DO UPDATE SET count = GREATEST(daily_active_users.count, EXCLUDED.count)""",
            day,
            int(count),
        )
        return int(count)

    async def active_sessions(self, now_ms: int) -> int:
        """Live proximity sessions right now (the index of session expiries)."""
        return int(await self._client.zcount(self._keys.active_sessions, f"({now_ms}", "+inf"))
