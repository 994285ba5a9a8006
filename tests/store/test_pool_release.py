"""What a pooled connection carries over to its next acquirer: nothing.

The pool skips asyncpg's reset query on release (store/db.py Connection), so
these pin down what the release still undoes: settings changed through
``set_session`` and a transaction left open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from config.settings import Settings
from store import db


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    assert settings.database_url
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=1,
        connection_class=db.Connection,
        reset=db.release_reset,
        server_settings={"search_path": settings.db_schema},
    )
    yield pool
    await pool.close()


async def test_session_settings_are_undone_on_release(one_connection: asyncpg.Pool) -> None:
    async with one_connection.acquire() as conn:
        await conn.set_session("SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
        assert await conn.fetchval("SHOW enable_seqscan") == "off"
        first = conn.get_server_pid()
    async with one_connection.acquire() as conn:
        assert conn.get_server_pid() == first  # the same session, handed on
        assert await conn.fetchval("SHOW enable_seqscan") == "on"
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"


async def test_a_cancelled_transaction_is_rolled_back_on_release(
    one_connection: asyncpg.Pool, pg: asyncpg.Connection, settings: Settings
) -> None:
    await pg.execute(f'CREATE SCHEMA "{settings.db_schema}"')  # dropped with the test's namespace
    await pg.execute("CREATE TABLE release_probe (n int)")
    with pytest.raises(RuntimeError):
        async with one_connection.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO release_probe VALUES (1)")
            raise RuntimeError("the request failed half-way")
    async with one_connection.acquire() as again:
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT count(*) FROM release_probe") == 0


async def test_the_app_pool_uses_the_release_that_keeps_sessions(settings: Settings) -> None:
    assert settings.database_url
    pool = await db.create_pool(settings.database_url, settings.db_schema, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.set_session("SET enable_hashjoin = off")
        assert await pool.fetchval("SHOW enable_hashjoin") == "on"
    finally:
        await pool.close()
