"""Daily suggestions at scale: the job's throughput and GET /suggestions latency.

    DATABASE_URL=... REDIS_URL=... python -m bench.suggestions            # 100,000 profiles
    python -m bench.suggestions --profiles 20000 --active 1000 --requests 300   # quicker

Seeds a throw-away schema in PostgreSQL, set-wise (bench/discover_seed.py's
users and profiles, then: 3-7 interests each from the taxonomy, answers to the
value questions for 60%, an age range for half and a maximum distance for a
quarter, a few time zones, two photos each, the assessment for 40%), marks
``--active`` people active (a refresh token this week), ANALYZEs, then
measures through SuggestionService (everything but HTTP and auth):

- **baseline**: ``SELECT 1`` through the same pool, 32 clients: the floor for
  any request that needs PostgreSQL, on this machine, in this run;
- **job**: SuggestionJob.run_once under its Redis lock, people/s;
- **first request of the day** (the list made on demand) for people the job
  did not cover, once every pooled connection has planned its statements
  (a warm-up group): one client at a time, then 32 at once;
- **precomputed**: the same people again, 32 clients back to back (a closed
  loop: latency there is 32 / throughput), then 32 clients sending at a fixed
  total rate (``--rate``, default half the closed-loop throughput), which is
  what a server below saturation sees.

Each latency is also given as a ratio to the baseline's p99 from the same run,
since these machines are shared and noisy. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg

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
WARM = 4 * CLIENTS  # first requests made before measuring (see main)
VOCABULARY = 400  # distinct interests drawn from the taxonomy

DIVERSIFY = """
UPDATE profiles SET
    -- (correlated through r.n, so that it is drawn for each profile)
    interests = ARRAY(SELECT DISTINCT ($1::text[])[1 + ((random() * (cardinality($1::text[]) - 1))::int + r.n * 0)]
                      FROM generate_series(1, 3 + (random() * 4)::int)),
    family_plans = CASE WHEN random() < 0.6 THEN (ARRAY['wants_children', 'open_to_children',
                        'does_not_want_children'])[1 + (random() * 2)::int] END,
    smoking = CASE WHEN random() < 0.6 THEN (ARRAY['never', 'sometimes', 'regularly'])[1 + (random() * 2)::int] END,
    drinking = CASE WHEN random() < 0.6 THEN (ARRAY['never', 'socially', 'often'])[1 + (random() * 2)::int] END,
    faith_importance = CASE WHEN random() < 0.6 THEN (ARRAY['not_important', 'somewhat_important',
                            'very_important'])[1 + (random() * 2)::int] END,
    time_zone = (ARRAY['Europe/Berlin', 'Europe/London', 'Europe/Lisbon', 'Europe/Athens', 'UTC'])[1 + r.n % 5],
    max_distance_km = CASE WHEN r.n % 4 = 0 THEN (ARRAY[25, 50, 100, 300])[1 + (random() * 3)::int] END
FROM (SELECT user_id, row_number() OVER (ORDER BY user_id) AS n FROM profiles) r
WHERE profiles.user_id = r.user_id
"""
# Half wish for an age range around their own (within 18..120).
AGE_RANGES = """
UPDATE profiles SET age_min = greatest(18, extract(year FROM age(birthdate))::int - 8),
                    age_max = least(120, extract(year FROM age(birthdate))::int + 8)
WHERE random() < 0.5
"""
PHOTOS = """
INSERT INTO photos (id, user_id, position, content_type, width, height, size_bytes, object_key, thumb_key)
SELECT gen_random_uuid(), p.user_id, pos, 'image/jpeg', 1200, 1600, 180000,
       'photos/' || p.user_id || '/' || pos, 'thumbs/' || p.user_id || '/' || pos
FROM profiles p CROSS JOIN generate_series(0, 1) AS pos
"""
MARK_ACTIVE = """
WITH picked AS (SELECT p.user_id FROM profiles p JOIN users u ON u.id = p.user_id
                WHERE u.deleted_at IS NULL ORDER BY random() LIMIT $1)
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
SELECT decode(md5(user_id::text), 'hex'), user_id, gen_random_uuid(), now() + interval '7 days' FROM picked
"""
ASSESS = """
INSERT INTO attachment_assessments (user_id, answers, anxiety, avoidance, style)
SELECT user_id, '{}'::jsonb, 2, 2, (ARRAY['secure', 'anxious', 'avoidant', 'fearful_avoidant'])[1 + (random() * 3)::int]
FROM profiles WHERE random() < 0.4
"""
INACTIVE = """
SELECT p.user_id FROM profiles p JOIN users u ON u.id = p.user_id
WHERE u.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.user_id = p.user_id)
ORDER BY random() LIMIT $1
"""


def ms(seconds: float) -> float:
    return seconds * 1000


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


async def closed_loop(
    call: Callable[[str], Awaitable[object]], keys: list[str], clients: int
) -> tuple[list[float], float]:
    """Each key once, ``clients`` at a time; (latencies, elapsed)."""
    gate = asyncio.Semaphore(clients)
    timings: list[float] = []

    async def one(key: str) -> None:
        async with gate:
            started = time.perf_counter()
            await call(key)
            timings.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(k) for k in keys))
    return timings, time.perf_counter() - started


async def paced(call: Callable[[str], Awaitable[object]], keys: list[str], clients: int, rate: float) -> list[float]:
    """``clients`` clients sending ``rate`` requests/s in all, each on its own
    schedule (a latency counts from when the request was due, so falling
    behind shows up as latency instead of hiding as a lower rate)."""
    timings: list[float] = []
    interval = clients / rate
    started = time.perf_counter()

    async def client(index: int) -> None:
        for n, key in enumerate(keys[index::clients]):
            due = started + (index / clients + n) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await call(key)
            timings.append(time.perf_counter() - due)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return timings


def line(name: str, timings: list[float], baseline_p99: float, extra: str = "") -> None:
    print(
        f"{name:<44} p50 {ms(statistics.median(timings)):7.2f} ms  p99 {ms(p99(timings)):7.2f} ms"
        f"  ({p99(timings) / baseline_p99:5.1f}x baseline p99){extra}"
    )


async def seed(conn: asyncpg.Connection, profiles: int, active: int) -> None:
    vocabulary = sorted(load_taxonomy().terms)[::7][:VOCABULARY]
    await conn.execute(SEED_USERS, profiles)
    await conn.execute(SEED_PROFILES)
    await conn.execute(DIVERSIFY, vocabulary)
    await conn.execute(AGE_RANGES)
    await conn.execute(PHOTOS)
    await conn.execute(MARK_ACTIVE, active)
    await conn.execute(ASSESS)
    await conn.execute("VACUUM ANALYZE")
    # Write the seed out now, so that its checkpoint does not stall the
    # commits being measured (seen: a 3.8 s first request and half the job
    # rate when it did).
    await conn.execute("CHECKPOINT")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=2_000, help="people active this week (the job's work)")
    parser.add_argument("--requests", type=int, default=500, help="people measured per latency figure")
    parser.add_argument("--rate", type=float, default=None, help="total requests/s of the paced run")
    parser.add_argument("--keep", action="store_true", help="keep the schema (printed) to look into")
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis = redis_client.create_client(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    schema = db.check_schema_name(f"bench_suggest_{secrets.token_hex(4)}")
    pool = await db.create_pool(dsn, schema, max_size=CLIENTS)
    try:
        await db.migrate(pool, schema)
        started = time.perf_counter()
        async with pool.acquire() as conn:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            await seed(conn, args.profiles, args.active)
            # Disjoint groups of people the job does not cover.
            idle = [str(r["user_id"]) for r in await conn.fetch(INACTIVE, args.requests + args.requests // 2 + WARM)]
        alone = WARM + args.requests // 2
        warm, one_by_one, crowd = idle[:WARM], idle[WARM:alone], idle[alone:]
        print(f"{args.profiles} profiles seeded in {time.perf_counter() - started:.0f} s; {args.active} active")

        records = PhotoRecords(pool)
        urls = PhotoUrls(derive_key(b"bench-only-key"), DEFAULT_PHOTO_URL_TTL_SECONDS)
        profiles = ProfileService(ProfileStore(pool), records, urls)
        service = SuggestionService(profiles, SuggestionStore(pool), load_taxonomy(), 10, 50)
        job = SuggestionJob(service, JobLock(redis, f"bench:{schema}:", "suggestions", 60_000))

        async def select_one(_: str) -> None:
            await pool.fetchval("SELECT 1")

        await closed_loop(select_one, [""] * 2000, CLIENTS)  # warm the pool
        base, base_elapsed = await closed_loop(select_one, [""] * 5000, CLIENTS)
        base_p99 = p99(base)
        print(
            f"{'baseline: SELECT 1, 32 clients':<44} p50 {ms(statistics.median(base)):7.2f} ms"
            f"  p99 {ms(base_p99):7.2f} ms  ({len(base) / base_elapsed:.0f}/s)"
        )

        started = time.perf_counter()
        made = await job.run_once() or 0
        elapsed = time.perf_counter() - started
        print(f"job: {made} lists in {elapsed:.1f} s = {made / elapsed:.0f} people/s")

        # A running server's connections have planned these statements long
        # ago: let every pooled connection do so before measuring.
        await closed_loop(service.today, warm, CLIENTS)
        first_one, _ = await closed_loop(service.today, one_by_one, 1)
        line("first request of the day, 1 client", first_one, base_p99)
        first_crowd, elapsed = await closed_loop(service.today, crowd, CLIENTS)
        line("first request of the day, 32 clients", first_crowd, base_p99, f"  {len(crowd) / elapsed:.0f}/s")
        again, elapsed = await closed_loop(service.today, crowd * 4, CLIENTS)
        throughput = len(again) / elapsed
        line("precomputed, 32 clients back to back", again, base_p99, f"  {throughput:.0f}/s")
        rate = args.rate or throughput / 2
        steady = await paced(service.today, crowd * 4, CLIENTS, rate)
        line(f"precomputed, 32 clients at {rate:.0f}/s in all", steady, base_p99)
    finally:
        if args.keep:
            print(f"kept schema {schema}")
        else:
            async with pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
