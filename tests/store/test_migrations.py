"""Numbered migrations: applied once, safe when started concurrently, and a
newer schema is refused."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from config.settings import Settings
from store import db


async def test_migrations_apply_once_even_concurrently(settings: Settings) -> None:
    assert settings.database_url
    pools = [await db.create_pool(settings.database_url, settings.db_schema, max_size=2) for _ in range(3)]
    try:
        versions = await asyncio.gather(*(db.migrate(p, settings.db_schema) for p in pools))
        assert set(versions) == {len(db.load_migrations())}
        rows = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, len(db.load_migrations()) + 1))
        assert await db.migrate(pools[0], settings.db_schema) == len(db.load_migrations())
    finally:
        for p in pools:
            await p.close()


async def test_refuses_a_schema_newer_than_the_code(settings: Settings, pg: asyncpg.Connection) -> None:
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        await db.migrate(pool, settings.db_schema)
        await pg.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')")
        with pytest.raises(db.SchemaTooNewError):
            await db.migrate(pool, settings.db_schema)
    finally:
        await pool.close()


def test_schema_names_are_checked() -> None:
    with pytest.raises(ValueError):
        db.check_schema_name('x"; DROP TABLE users; --')
