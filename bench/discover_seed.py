"""Discovery at 100,000 profiles: seed, EXPLAIN a page, time 50 pages.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.discover_seed

Creates a throw-away schema, applies the migrations, seeds the users and
profiles with one multi-row ``INSERT ... SELECT generate_series`` each (done
inside PostgreSQL, no row-by-row round trips), ANALYZEs, then for a viewer in
Berlin prints ``EXPLAIN (ANALYZE, BUFFERS)`` of a discovery page (first page,
a deep page behind a cursor, and a page with age + distance filters) and the
median / p95 time of 50 pages through :class:`DiscoverService` (the viewer's
profile, the page query and the page's photos: everything but HTTP). The
schema is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
import uuid
from typing import Any

import asyncpg

from config.settings import DEFAULT_PHOTO_URL_TTL_SECONDS
from proximity_server.features.card_scores import CardScorer
from proximity_server.features.discover import DiscoverParams, DiscoverService, decode_cursor
from proximity_server.features.photo_urls import PhotoUrls, derive_key
from proximity_server.features.profiles import ProfileService, today_utc, years_before
from proximity_server.features.taxonomy import load_taxonomy
from store import db
from store.compatibility import CompatibilityStore
from store.discover import DiscoverQuery, DiscoverStore, page_sql
from store.photos import PhotoRecords
from store.profiles import Location, ProfileStore

DEFAULT_PROFILES = 100_000
PAGES = 50
BERLIN = Location(52.52, 13.405)

SEED_USERS = """
INSERT INTO users (id, email, password_hash, created_at, deleted_at)
SELECT gen_random_uuid(), 'bench' || i || '@example.com', 'x',
       now() - make_interval(secs => ($1 - i) * 300),
       CASE WHEN i % 100 = 0 THEN now() END          -- 1% soft-deleted
FROM generate_series(1, $1) AS i
"""

# Genders evenly spread; interested_in one of six combinations; ages 18–65;
# 90% with a location somewhere in Europe (lat 36–60, lon -10–30).
SEED_PROFILES = """
INSERT INTO profiles (user_id, display_name, birthdate, gender, interested_in, bio, interests,
                      lat, lon, created_at, updated_at)
SELECT u.id, 'Person ' || n,
       current_date - make_interval(days => 18 * 366 + (random() * 47 * 365)::int),
       (ARRAY['woman', 'man', 'nonbinary'])[1 + n % 3],
       CASE (n / 3) % 6 WHEN 0 THEN ARRAY['man'] WHEN 1 THEN ARRAY['woman'] WHEN 2 THEN ARRAY['man', 'woman']
                        WHEN 3 THEN ARRAY['woman', 'nonbinary'] WHEN 4 THEN ARRAY['man', 'nonbinary']
                        ELSE ARRAY['woman', 'man', 'nonbinary'] END,
       'bio', ARRAY['hiking', 'jazz'],
       CASE WHEN n % 10 <> 0 THEN 36 + random() * 24 END,
       CASE WHEN n % 10 <> 0 THEN -10 + random() * 40 END,
       u.created_at, u.created_at
FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS n FROM users) AS u
"""


async def explain(conn: asyncpg.Connection, title: str, q: DiscoverQuery) -> None:
    sql, args = page_sql(q)
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
    print(f"\n=== EXPLAIN (ANALYZE, BUFFERS): {title}")
    for row in rows:
        print(row[0])


async def time_pages(service: DiscoverService, viewer_id: str, params: DiscoverParams) -> tuple[list[float], int]:
    """Walk ``PAGES`` pages (following next_cursor, restarting at the end)."""
    timings: list[float] = []
    cursor: str | None = None
    items = 0
    for _ in range(PAGES):
        page_params = DiscoverParams(
            limit=params.limit,
            after=decode_cursor(cursor) if cursor else None,
            min_age=params.min_age,
            max_age=params.max_age,
            max_distance_km=params.max_distance_km,
        )
        started = time.perf_counter()
        page: dict[str, Any] = await service.page(viewer_id, page_params)
        timings.append((time.perf_counter() - started) * 1000)
        items += len(page["items"])
        cursor = page["next_cursor"]
    return timings, items


def report(title: str, timings: list[float], items: int) -> None:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(
        f"{title}: {len(timings)} pages, {items} profiles, "
        f"median {statistics.median(timings):.2f} ms, p95 {p95:.2f} ms, max {ordered[-1]:.2f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=DEFAULT_PROFILES)
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    schema = db.check_schema_name(f"bench_discover_{secrets.token_hex(4)}")
    pool = await db.create_pool(dsn, schema)
    try:
        await db.migrate(pool, schema)
        async with pool.acquire() as conn:
            started = time.perf_counter()
            await conn.execute(SEED_USERS, args.profiles)
            await conn.execute(SEED_PROFILES)
            await conn.execute("ANALYZE users; ANALYZE profiles")
            print(f"seeded {args.profiles} users and profiles in {time.perf_counter() - started:.1f} s "
                  f"(schema {schema})")
            viewer_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO users (id, email, password_hash) VALUES ($1, 'viewer@example.com', 'x')", viewer_id
            )
            await conn.execute(
                """INSERT INTO profiles (user_id, display_name, birthdate, gender, interested_in, lat, lon)
                   VALUES ($1, 'Viewer', '1995-05-05', 'woman', '{man}', $2, $3)""",
                viewer_id,
                BERLIN.lat,
                BERLIN.lon,
            )
            base = DiscoverQuery(viewer_id, "woman", ("man",), BERLIN, limit=21)
            await explain(conn, "first page (limit 20 + 1)", base)
            middle = await conn.fetchrow(
                "SELECT created_at, user_id FROM profiles ORDER BY created_at, user_id OFFSET $1 LIMIT 1",
                args.profiles // 2,
            )
            deep = DiscoverQuery(**{**_fields(base), "after": (middle["created_at"], str(middle["user_id"]))})
            await explain(conn, "a page behind a cursor half way through", deep)
            today = today_utc()
            filtered = DiscoverQuery(
                **{
                    **_fields(base),
                    "born_on_or_before": years_before(today, 25),
                    "born_after": years_before(today, 41),
                    "max_distance_km": 150.0,
                }
            )
            await explain(conn, "ages 25–40 within 150 km (bounding box, then haversine)", filtered)

        records = PhotoRecords(pool)
        urls = PhotoUrls(derive_key(b"bench-only-key"), DEFAULT_PHOTO_URL_TTL_SECONDS)
        scorer = CardScorer(CompatibilityStore(pool), load_taxonomy())
        service = DiscoverService(
            ProfileService(ProfileStore(pool), records, urls, scorer), DiscoverStore(pool), records, scorer
        )
        print()
        await time_pages(service, viewer_id, DiscoverParams())  # warm up
        report("plain pages (limit 20)", *await time_pages(service, viewer_id, DiscoverParams()))
        report(
            "filtered pages (ages 25–40, 150 km)",
            *await time_pages(service, viewer_id, DiscoverParams(min_age=25, max_age=40, max_distance_km=150.0)),
        )
    finally:
        if not args.keep:
            async with pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await pool.close()


def _fields(q: DiscoverQuery) -> dict[str, Any]:
    return {name: getattr(q, name) for name in DiscoverQuery.__dataclass_fields__}


if __name__ == "__main__":
    asyncio.run(main())
