"""PostgreSQL: the asyncpg pool and the numbered, forward-only migrations.

Migrations are ``migrations/NNNN_name.sql`` files, applied in order, each in
its own transaction, recorded in ``schema_migrations``. Start-up holds a
PostgreSQL advisory lock (one per schema) while migrating, so several
processes starting at once apply each migration exactly once: the others wait
for the lock, then find nothing left to do.

Rolling deploys (the Synapse model). ``SCHEMA_VERSION`` is the newest
migration this code knows. Each migration may declare, in a header line::

    -- compat: 3

the oldest code still able to run against the schema once it is applied:
code whose ``SCHEMA_VERSION`` is at least 3. A migration without that line is
additive (new tables, columns, functions that older code simply ignores): it
keeps the previous release working and does not raise the bar. A migration
that drops, renames or changes the meaning of something older code uses says
``-- compat: N`` with N its own number. ``SCHEMA_COMPAT_VERSION`` is the
highest ``compat`` among this code's migrations.

``schema_migrations.compat_version`` records each applied migration's
``compat``; the database's compatibility version is the highest of them (a
row written by a server from before compat versions counts as its own
number). A process that finds a schema newer than it knows keeps serving as
long as that compatibility version is at most its ``SCHEMA_VERSION`` (a
replica still running the previous release keeps serving while a new one
migrates); otherwise it refuses to start with :class:`SchemaTooNewError`,
naming both versions.
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
_COMPAT_HEADER = re.compile(r"^--\s*compat:\s*(\d+)\s*$", re.MULTILINE)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ADDITIVE: Final = 0  # the compat of a migration without a header: it raises no bar

POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 10
COMMAND_TIMEOUT_SECONDS: Final = 10.0
CONNECT_TIMEOUT_SECONDS: Final = 5.0


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer version of the server that this one cannot run against."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    compat: int = ADDITIVE


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What :func:`migrate` found and left: the schema in force and how old code may be."""

    version: int
    compat_version: int


def parse_compat(version: int, sql: str) -> int:
    """The ``-- compat: N`` header of migration ``version`` (``ADDITIVE`` when absent)."""
    found = _COMPAT_HEADER.findall(sql)
    if not found:
        return ADDITIVE
    if len(found) > 1:
        raise RuntimeError(f"migration {version:04d} declares compat more than once")
    compat = int(found[0])
    if compat > version:
        raise RuntimeError(f"migration {version:04d} declares compat {compat}, beyond its own number")
    return compat


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file name not of the form NNNN_name.sql: {path.name}")
        version, sql = int(match[1]), path.read_text(encoding="utf-8")
        migrations.append(Migration(version, match[2], sql, parse_compat(version, sql)))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return migrations


_MIGRATIONS: Final = load_migrations()
SCHEMA_VERSION: Final = len(_MIGRATIONS)
SCHEMA_COMPAT_VERSION: Final = max((m.compat for m in _MIGRATIONS), default=ADDITIVE)


def check_schema_name(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


def migration_lock_key(schema: str) -> int:
    """The advisory lock migrating ``schema`` holds (session level, so it spans the per-migration transactions)."""
    return zlib.crc32(f"proximity_server:migrate:{check_schema_name(schema)}".encode())


class Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that knows whether it changed session settings.

    asyncpg's default release runs a reset query (``RESET ALL``, ``UNLISTEN``,
    ``CLOSE ALL``, advisory unlock): one more round trip after every query
    through the pool. This code keeps no session state but what
    :meth:`set_session` records: no LISTEN, cursors only inside transactions,
    advisory locks transaction-scoped or released by their holder. So a
    release only ends an open transaction (asyncpg does that first anyway) and
    runs ``RESET ALL`` on the connections that changed a setting.
    """

    __slots__ = ("_settings_changed",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._settings_changed = False

    async def set_session(self, settings_sql: str) -> None:
        """Run ``SET ...`` statements for this acquirer: undone on release."""
        self._settings_changed = True
        await self.execute(settings_sql)

    async def restore_settings(self) -> None:
        if self._settings_changed:
            await self.execute("RESET ALL")
            self._settings_changed = False


async def release_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset on release (see :class:`Connection`)."""
    await conn.restore_settings()


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
        # JIT compiles a plan whose estimated cost is high, which a generic plan
        # of a LIMITed walk easily is: 60-80 ms of compiling for a 3 ms query.
        # Nothing here is an analytic query that could win it back.
        server_settings={"search_path": schema, "application_name": application_name, "jit": "off"},
        connection_class=Connection,
        reset=release_reset,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str = "public", migrations: list[Migration] | None = None) -> int:
    """Apply pending migrations; return the schema version now in force.

    That may be newer than ``SCHEMA_VERSION`` when another release migrated
    the database and declared this one still compatible."""
    return (await migrate_schema(pool, schema, migrations)).version


async def migrate_schema(
    pool: asyncpg.Pool, schema: str = "public", migrations: list[Migration] | None = None
) -> SchemaState:
    """:func:`migrate`, returning the compatibility version too (``migrations`` defaults to this code's)."""
    lock_key = migration_lock_key(schema)
    migrations = _MIGRATIONS if migrations is None else migrations
    known = len(migrations)
    table = f'"{schema}".schema_migrations'
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {table} (
                        version         INTEGER PRIMARY KEY,
                        name            TEXT NOT NULL,
                        applied_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
                        compat_version  INTEGER)"""
            )
            # Databases migrated before compat versions were recorded: add the
            # column, and fill it in for the migrations this code knows.
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS compat_version INTEGER")
            await conn.executemany(
                f"UPDATE {table} SET compat_version = $2 WHERE version = $1 AND compat_version IS NULL",  # noqa: S608
                [(m.version, m.compat) for m in migrations],
            )
            row = await conn.fetchrow(
                f"""SELECT coalesce(max(version), 0) AS version,
                           coalesce(max(coalesce(compat_version, version)), 0) AS compat
                      FROM {table}"""  # noqa: S608 (checked name)
            )
            assert row is not None
            current, compat = int(row["version"]), int(row["compat"])
            if current > known:
                return _check_newer_schema(schema, current, compat, known)
            for migration in migrations[current:]:
                async with conn.transaction():
                    await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {table} (version, name, compat_version) VALUES ($1, $2, $3)",  # noqa: S608
                        migration.version,
                        migration.name,
                        migration.compat,
                    )
                compat = max(compat, migration.compat)
                log.info(
                    "applied migration",
                    extra={"version": migration.version, "migration": migration.name, "compat": migration.compat},
                )
            return SchemaState(known, compat)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)


def _check_newer_schema(schema: str, current: int, compat: int, known: int) -> SchemaState:
    if compat > known:
        message = (
            f"database schema {schema!r} is at version {current} and needs code that knows schema "
            f"version {compat} or newer; this server knows up to version {known}: upgrade the server"
        )
        log.error(message, extra={"schema_version": current, "compat_version": compat, "code_version": known})
        raise SchemaTooNewError(message)
    log.warning(
        f"database schema {schema!r} is at version {current}, newer than this server's {known}; "
        f"serving anyway, it is declared compatible with code from version {compat} on",
        extra={"schema_version": current, "compat_version": compat, "code_version": known},
    )
    return SchemaState(current, compat)


async def ping(pool: asyncpg.Pool) -> None:
    await pool.fetchval("SELECT 1")
