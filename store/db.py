"""PostgreSQL: the asyncpg pool and the numbered, forward-only migrations.

Migrations are ``migrations/NNNN_name.sql`` files, applied in order, each in
its own transaction, recorded in ``schema_migrations``. Start-up holds an
advisory lock while migrating, so several processes starting at once are safe.
A database whose schema is newer than this code refuses to serve it.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 10
COMMAND_TIMEOUT_SECONDS: Final = 10.0
CONNECT_TIMEOUT_SECONDS: Final = 5.0


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer version of the server."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return migrations


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def create_pool(
    dsn: str, schema: str = "public", *, max_size: int = POOL_MAX_SIZE, application_name: str = "proximity_server"
) -> asyncpg.Pool:
    check_schema_name(schema)
    pool = await asyncpg.create_pool(
        dsn,
        min_size=POOL_MIN_SIZE,
        max_size=max_size,
        command_timeout=COMMAND_TIMEOUT_SECONDS,
        timeout=CONNECT_TIMEOUT_SECONDS,
        server_settings={"search_path": schema, "application_name": application_name},
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str = "public") -> int:
    """Apply pending migrations; return the schema version now in force."""
    check_schema_name(schema)
    migrations = load_migrations()
    known = len(migrations)
    lock_key = zlib.crc32(f"proximity_server:migrate:{schema}".encode())
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                        version     INTEGER PRIMARY KEY,
                        name        TEXT NOT NULL,
                        applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            current = await conn.fetchval(
                f'SELECT coalesce(max(version), 0) FROM "{schema}".schema_migrations'  # noqa: S608 (checked name)
            )
            if current > known:
                raise SchemaTooNewError(
                    f"database schema is at version {current}, this server knows up to {known}; "
                    "upgrade the server instead"
                )
            for migration in migrations[current:]:
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)',  # noqa: S608
                        migration.version,
                        migration.name,
                    )
                log.info("applied migration", extra={"version": migration.version, "migration": migration.name})
            return known
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")
