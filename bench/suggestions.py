"""Daily suggestions: the job's throughput and GET /suggestions latency.

    DATABASE_URL=... REDIS_URL=... python -m bench.suggestions --profiles 100000 --active 2000

Seeds profiles like bench/discover_seed.py (in PostgreSQL, set-wise), marks
``--active`` of them active (a refresh token this week) with an assessment,
then reports: the job's people/s (SuggestionJob.run_once under its Redis
lock), the p99 of a first request of the day (list made on demand) and of a
precomputed one, each with 32 concurrent clients through SuggestionService
(everything but HTTP). The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time

from bench.discover_seed import SEED_PROFILES, SEED_USERS
from config.settings import DEFAULT_PHOTO_URL_TTL_SECONDS
from proximity_server.features.photo_urls import PhotoUrls, derive_key
from proximity_server.features.profiles import ProfileService
from proximity_server.features.suggestions import SuggestionJob, SuggestionService
from proximity_server.features.taxonomy import load_taxonomy
from store import db, redis_client
from store.job_lock import JobLock
from store.photos import PhotoRecords
from store.profiles import ProfileStore
from store.suggestions import SuggestionStore

CLIENTS = 32

MARK_ACTIVE = """
WITH picked AS (SELECT p.user_id FROM profiles p JOIN users u ON u.id = p.user_id
                WHERE u.deleted_at IS NULL ORDER BY random() LIMIT $1)
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
SELECT decode(md5(user_id::text), 'hex'), user_id, gen_random_uuid(), now() + interval '7 days' FROM picked
"""
ASSESS = """
INSERT INTO attachment_assessments (user_id, answers, anxiety, avoidance, style)
SELECT user_id, '{}'::jsonb, 2, 2, (ARRAY['secure', 'anxious', 'avoidant', 'fearful_avoidant'])[1 + (random() * 3)::int]
FROM refresh_tokens
"""


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000 if len(samples) > 1 else samples[0] * 1000


async def timed_requests(service: SuggestionService, people: list[str]) -> list[float]:
    gate = asyncio.Semaphore(CLIENTS)
    timings: list[float] = []

    async def one(user_id: str) -> None:
        async with gate:
            started = time.perf_counter()
            await service.today(user_id)
            timings.append(time.perf_counter() - started)

    await asyncio.gather(*(one(u) for u in people))
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis = redis_client.create_client(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    schema = db.check_schema_name(f"bench_suggest_{secrets.token_hex(4)}")
    pool = await db.create_pool(dsn, schema)
    try:
        await db.migrate(pool, schema)
        async with pool.acquire() as conn:
            await conn.execute(SEED_USERS, args.profiles)
            await conn.execute(SEED_PROFILES)
            await conn.execute(MARK_ACTIVE, args.active)
            await conn.execute(ASSESS)
            await conn.execute("ANALYZE")
            inactive = [
                str(r["user_id"])
                for r in await conn.fetch(
                    """SELECT p.user_id FROM profiles p JOIN users u ON u.id = p.user_id
                       WHERE u.deleted_at IS NULL AND NOT EXISTS
                         (SELECT 1 FROM refresh_tokens t WHERE t.user_id = p.user_id) LIMIT $1""",
                    args.requests,
                )
            ]
        records = PhotoRecords(pool)
        urls = PhotoUrls(derive_key(b"bench-only-key"), DEFAULT_PHOTO_URL_TTL_SECONDS)
        profiles = ProfileService(ProfileStore(pool), records, urls)
        service = SuggestionService(profiles, SuggestionStore(pool), load_taxonomy(), 10, 50)
        job = SuggestionJob(service, JobLock(redis, f"bench:{schema}:", "suggestions", 60_000))
        started = time.perf_counter()
        made = await job.run_once() or 0
        elapsed = time.perf_counter() - started
        print(f"{args.profiles} profiles, {args.active} active")
        print(f"job: {made} lists in {elapsed:.1f} s = {made / elapsed:.0f} people/s")
        first = await timed_requests(service, inactive)
        print(f"first request of the day ({len(first)} people, {CLIENTS} clients): p99 {p99(first):.1f} ms")
        again = await timed_requests(service, inactive)
        print(f"precomputed ({len(again)} people, {CLIENTS} clients): p99 {p99(again):.1f} ms")
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
