"""Data export cost: time and memory of one export of a busy account.

    DATABASE_URL=postgresql://… python -m bench.export [--messages 10000] [--photos 6] [--repeat 3]

Seeds, in a throw-away schema, one account with a profile, ``--photos``
photos (2048x1536 noise JPEGs, the largest an upload can store, in a local
photo folder) and one conversation of ``--messages`` messages from both
sides, then builds its export with the server's own code
(``ExportService.build``: keyset pages, chunked photos, zip written from
threads, stored in the local photo store). Printed: the export's wall time
and size, the process RSS growth while it ran (peak RSS during the export
minus RSS before, sampled every 10 ms), and as a baseline measured in the
same run, the time to merely read every message page by page and every
photo chunk by chunk (the I/O an export cannot avoid). Targets: < 10 s and
< 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import uvloop
from PIL import Image

from config.settings import normalise_database_url
from proximity_server.features.export import MESSAGE_PAGE, ExportService
from store import db
from store.export import ExportStore
from store.photos import LocalPhotoStore, object_keys

RSS_SAMPLE_SECONDS = 0.01
PASSWORD_HASH = "not-used"  # noqa: S105 (the bench never logs in)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def noise_jpeg() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((2048, 1536), 64).convert("RGB").save(out, format="JPEG", quality=90)
    return out.getvalue()


async def seed(pool: asyncpg.Pool, photos: LocalPhotoStore, messages: int, n_photos: int) -> tuple[str, str]:
    me = await pool.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id::text",
        f"bench_{secrets.token_hex(4)}@example.com",
        PASSWORD_HASH,
    )
    other = await pool.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id::text",
        f"other_{secrets.token_hex(4)}@example.com",
        PASSWORD_HASH,
    )
    await pool.execute(
        """INSERT INTO profiles (user_id, display_name, birthdate, gender, interested_in, bio)
           VALUES ($1, 'Bench', '1990-01-01', 'woman', '{man}', 'a bio')""",
        me,
    )
    image = noise_jpeg()
    for position in range(n_photos):
        photo_id = str(uuid.uuid4())
        key, thumb = object_keys(me, photo_id)
        await photos.put(key, image, "image/jpeg")
        await pool.execute(
            """INSERT INTO photos (id, user_id, position, content_type, width, height, size_bytes,
                                   object_key, thumb_key)
               VALUES ($1, $2, $3, 'image/jpeg', 2048, 1536, $4, $5, $6)""",
            photo_id,
            me,
            position,
            len(image),
            key,
            thumb,
        )
    a, b = sorted((me, other))
    match_id = await pool.fetchval("INSERT INTO matches (user_a, user_b) VALUES ($1, $2) RETURNING id", a, b)
    conversation = await pool.fetchval(
        "INSERT INTO conversations (match_id, user_a, user_b) VALUES ($1, $2, $3) RETURNING id::text", match_id, a, b
    )
    await pool.execute(
        "INSERT INTO conversation_members (conversation_id, user_id) VALUES ($1, $2), ($1, $3)", conversation, a, b
    )
    await pool.execute(
        """INSERT INTO messages (conversation_id, sender, client_id, text)
           SELECT $1, CASE WHEN g % 2 = 0 THEN $2::uuid ELSE $3::uuid END, 'c' || g,
                  'message number ' || g || ' ' || repeat('lorem ipsum ', 1 + g % 20)
           FROM generate_series(1, $4) AS g""",
        conversation,
        me,
        other,
        messages,
    )
    return me, conversation


async def baseline(store: ExportStore, photos: LocalPhotoStore, user_id: str, conversation: str) -> float:
    """Read every message page and every photo chunk, nothing else."""
    started = time.perf_counter()
    after = 0
    while page := await store.messages_page(conversation, after, MESSAGE_PAGE):
        after = page[-1]["id"]
    for photo in await store.photos(user_id):
        async for _ in await photos.open(photo["object_key"]):
            pass
    return time.perf_counter() - started


async def one_export(pool: asyncpg.Pool, service: ExportService, user_id: str) -> tuple[float, int, int]:
    """(seconds, RSS growth in bytes, file size) of one export."""
    job_id = await pool.fetchval("INSERT INTO data_exports (user_id) VALUES ($1) RETURNING id::text", user_id)
    before = rss_bytes()
    peak = before
    task = asyncio.create_task(service.build(job_id, user_id))
    started = time.perf_counter()
    while not task.done():
        peak = max(peak, rss_bytes())
        await asyncio.sleep(RSS_SAMPLE_SECONDS)
    await task
    elapsed = time.perf_counter() - started
    row = await pool.fetchrow("SELECT status, size_bytes FROM data_exports WHERE id = $1", job_id)
    assert row["status"] == "ready", row["status"]
    return elapsed, peak - before, row["size_bytes"]


async def main(args: argparse.Namespace) -> None:
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        raise SystemExit("set DATABASE_URL")
    dsn = normalise_database_url(dsn)
    schema = f"bench_export_{secrets.token_hex(4)}"
    pool = await db.create_pool(dsn, schema)
    try:
        await db.migrate(pool, schema)
        with tempfile.TemporaryDirectory(prefix="bench-export-") as folder:
            photos = LocalPhotoStore(Path(folder))
            user_id, conversation = await seed(pool, photos, args.messages, args.photos)
            store = ExportStore(pool)
            # No password checks here: build() never asks the account service.
            service = ExportService(store, photos, accounts=None)  # type: ignore[arg-type]
            rounds = []
            for _ in range(args.repeat):
                base = await baseline(store, photos, user_id, conversation)
                took, grew, size = await one_export(pool, service, user_id)
                rounds.append((base, took, grew, size))
                print(
                    f"export {took:.2f} s, RSS +{grew / 2**20:.1f} MB, file {size / 2**20:.1f} MB; "
                    f"baseline read {base:.2f} s; ratio {took / base:.1f}x"
                )
            took = statistics.median(r[1] for r in rounds)
            print(
                f"median of {args.repeat}: export {took:.2f} s (target < 10 s), "
                f"RSS growth max {max(r[2] for r in rounds) / 2**20:.1f} MB (target < 50 MB), "
                f"export / baseline read {statistics.median(r[1] / r[0] for r in rounds):.1f}x "
                f"({args.messages} messages, {args.photos} photos)"
            )
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    uvloop.run(main(parser.parse_args()))
