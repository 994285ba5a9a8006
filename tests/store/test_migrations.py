"""Numbered migrations: applied once, safe when started concurrently, and a
newer schema is refused."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

from config.settings import Settings
from store import db
from tests.auth_helpers import register
from tests.conftest import MakeClient

LOCK_WAIT_SECONDS = 0.3


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


# Rolling deploys: a schema newer than the code, declared compatible or not.


async def test_newer_but_compatible_schema_starts_and_serves(
    settings: Settings, pg: asyncpg.Connection, make_client: MakeClient
) -> None:
    """Another release migrated past this code with an additive migration: this replica keeps serving."""
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        await db.migrate(pool, settings.db_schema)
    finally:
        await pool.close()
    newer = db.SCHEMA_VERSION + 1
    await pg.execute(
        "INSERT INTO schema_migrations (version, name, compat_version) VALUES ($1, 'from_the_future', $2)",
        newer,
        db.SCHEMA_VERSION,
    )
    client = await make_client()
    await register(client)
    assert await pg.fetchval("SELECT count(*) FROM users") == 1
    assert await pg.fetchval("SELECT max(version) FROM schema_migrations") == newer


async def test_newer_and_incompatible_schema_refuses_naming_both_versions(
    settings: Settings, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        await db.migrate(pool, settings.db_schema)
        newer = db.SCHEMA_VERSION + 2
        await pg.execute(
            "INSERT INTO schema_migrations (version, name, compat_version) VALUES ($1, 'breaking', $1)", newer
        )
        with caplog.at_level(logging.ERROR, logger="store.db"), pytest.raises(db.SchemaTooNewError) as refused:
            await db.migrate(pool, settings.db_schema)
    finally:
        await pool.close()
    for text in (str(refused.value), caplog.text):
        assert f"version {newer}" in text
        assert f"up to version {db.SCHEMA_VERSION}" in text


async def test_previous_release_serves_after_an_additive_migration_but_not_a_breaking_one(settings: Settings) -> None:
    """Code that knows one migration fewer runs against the schema the newer code left, unless that
    migration declared itself incompatible with it."""
    assert settings.database_url
    current = db.load_migrations()
    additive = db.Migration(len(current) + 1, "additive", "CREATE TABLE rolling_additive (id INTEGER)")
    breaking_sql = f"-- compat: {len(current) + 2}\nCREATE TABLE rolling_breaking (id INTEGER)"
    breaking = db.Migration(len(current) + 2, "breaking", breaking_sql, db.parse_compat(len(current) + 2, breaking_sql))
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        state = await db.migrate_schema(pool, settings.db_schema, [*current, additive])
        assert state == db.SchemaState(len(current) + 1, db.SCHEMA_COMPAT_VERSION)
        older = await db.migrate_schema(pool, settings.db_schema, current)
        assert older == db.SchemaState(len(current) + 1, db.SCHEMA_COMPAT_VERSION)

        state = await db.migrate_schema(pool, settings.db_schema, [*current, additive, breaking])
        assert state == db.SchemaState(len(current) + 2, len(current) + 2)
        with pytest.raises(db.SchemaTooNewError):
            await db.migrate_schema(pool, settings.db_schema, [*current, additive])
        rows = await pool.fetch("SELECT version, compat_version FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["compat_version"]) for r in rows][-2:] == [
            (len(current) + 1, db.ADDITIVE),
            (len(current) + 2, len(current) + 2),
        ]
    finally:
        await pool.close()


async def test_a_migrator_waits_for_the_advisory_lock(settings: Settings, pg: asyncpg.Connection) -> None:
    """Two replicas starting together: the second waits for the first's lock, then finds nothing to apply."""
    assert settings.database_url
    key = db.migration_lock_key(settings.db_schema)
    await pg.execute("SELECT pg_advisory_lock($1)", key)
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        waiting = asyncio.ensure_future(db.migrate(pool, settings.db_schema))
        await asyncio.sleep(LOCK_WAIT_SECONDS)
        assert not waiting.done()
        assert await pg.fetchval("SELECT to_regclass('schema_migrations')") is None
        await pg.execute("SELECT pg_advisory_unlock($1)", key)
        assert await asyncio.wait_for(waiting, timeout=10) == db.SCHEMA_VERSION
        rows = await pg.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
        assert len(rows) == db.SCHEMA_VERSION and all(r["n"] == 1 for r in rows)
    finally:
        await pool.close()


def test_compat_headers_are_parsed_and_checked(tmp_path: Path) -> None:
    assert db.parse_compat(4, "-- Some table.\nCREATE TABLE t ();") == db.ADDITIVE
    assert db.parse_compat(4, "-- Drops a column.\n-- compat: 4\nALTER TABLE t DROP COLUMN c;") == 4
    with pytest.raises(RuntimeError, match="beyond its own number"):
        db.parse_compat(4, "-- compat: 5\n")
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a ();")
    (tmp_path / "0002_second.sql").write_text("-- compat: 2\nDROP TABLE a;")
    assert [(m.version, m.compat) for m in db.load_migrations(tmp_path)] == [(1, 0), (2, 2)]
    assert len(db.load_migrations()) == db.SCHEMA_VERSION
    assert 0 <= db.SCHEMA_COMPAT_VERSION <= db.SCHEMA_VERSION


async def test_a_database_migrated_before_compat_versions_gets_them_filled_in(
    settings: Settings, pg: asyncpg.Connection
) -> None:
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        await db.migrate(pool, settings.db_schema)
        await pg.execute("ALTER TABLE schema_migrations DROP COLUMN compat_version")
        assert await db.migrate_schema(pool, settings.db_schema) == db.SchemaState(
            db.SCHEMA_VERSION, db.SCHEMA_COMPAT_VERSION
        )
        rows = await pg.fetch("SELECT version, compat_version FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["compat_version"]) for r in rows] == [
            (m.version, m.compat) for m in db.load_migrations()
        ]
    finally:
        await pool.close()
